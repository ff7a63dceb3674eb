"""The one runner interface: infer_many is infer over each item, for every backend alike."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SMALL

from ssh_toolkit.errors import BackendError
from ssh_toolkit.runners.base import Runner
from ssh_toolkit.runners.openvino import OpenVINORunner


class Doubler(Runner):
    name = "doubler"

    def _activate(self) -> None:
        pass

    def _infer(self, tensor):
        return {"out": tensor * 2}


def test_default_infer_many_is_infer_in_order():
    got = []
    with Doubler(["out"]) as r:
        r.infer_many(((k, np.full((1, 2), k, np.float32)) for k in range(4)),
                     lambda k, raw: got.append((k, raw.arrays["out"].tolist())))
    assert got == [(k, [[2 * k, 2 * k]]) for k in range(4)]


def test_infer_before_activate_is_an_error():
    with pytest.raises(BackendError, match="before activate"):
        Doubler(["out"]).infer(np.zeros(1))


@pytest.mark.slow  # standin_ws runs Model Optimizer
def test_openvino_infer_many_equals_infer_for_every_item(card, standin_ws):
    _, _, irs = standin_ws
    ir = irs["FP32"]
    rng = np.random.default_rng(0)
    tensors = {k: rng.uniform(0, 255, (1, 3, SMALL, SMALL)).astype(np.float32) for k in "abcde"}
    many = {}
    with OpenVINORunner(ir.xml, card.output_names, jobs=2) as r:
        r.infer_many(tensors.items(), lambda k, raw: many.__setitem__(k, raw))
        one = {k: r.infer(t) for k, t in tensors.items()}
    assert sorted(many) == sorted(tensors)
    for k in tensors:
        for name, a in one[k].arrays.items():
            np.testing.assert_array_equal(many[k].arrays[name], a)
