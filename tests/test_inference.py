"""The shared inference phase: execution variants and their names."""

from __future__ import annotations

import pytest
from conftest import SMALL

from ssh_toolkit.errors import BackendError, UsageError
from ssh_toolkit.inference import exec_variants, model_set
from ssh_toolkit.runners.openvino import OpenVINORunner, default_exec_precision


def _cpu_has_bf16() -> bool:
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_the_runtime_default_follows_the_cpu_flags():
    assert default_exec_precision() == ("bf16" if _cpu_has_bf16() else "f32")


def test_default_folds_into_a_pinned_variant_of_the_same_precision():
    variants, notes = exec_variants(["f32", "default", "bf16"])
    assert [v.precision for v in variants] == (["f32", "bf16"] if _cpu_has_bf16() else ["f32"])
    assert len(notes) == 1 and "evaluated once" in notes[0]
    with pytest.raises(UsageError, match="--exec-precision 'int8': expected one of f32, bf16, default"):
        exec_variants(["int8"])


@pytest.mark.slow  # standin_ws runs Model Optimizer
def test_model_names_say_the_precision_that_runs(card, standin_ws):
    ws, ck, irs = standin_ws
    models = model_set(card, ck, list(irs.values()), SMALL, exec_precisions=["f32", "default"])
    deploy = default_exec_precision()
    expected = ["mxnet", "ir-fp32", "ir-fp16"] if deploy == "f32" else \
        ["mxnet", f"ir-fp32@{deploy}", "ir-fp32", f"ir-fp16@{deploy}", "ir-fp16"]
    assert sorted(m.name for m in models) == sorted(expected)
    by = {m.name: m for m in models}
    assert by["ir-fp32"].precision == "FP32"
    if deploy != "f32":
        assert by[f"ir-fp16@{deploy}"].precision == f"FP16@{deploy}"
        assert len({m.key for m in models}) == len(models)  # each variant has its own cache


@pytest.mark.skipif(not _cpu_has_bf16(), reason="needs a CPU that runs bf16")
@pytest.mark.slow  # standin_ws runs Model Optimizer
def test_a_runner_refuses_to_run_in_another_precision_than_its_name_says(card, standin_ws):
    _, _, irs = standin_ws
    r = OpenVINORunner(irs["FP32"].xml, card.output_names, name="ir-fp32", config={"INFERENCE_PRECISION_HINT": "bf16"},
                       expect_exec_precision="f32")
    with pytest.raises(BackendError, match="compiled to run in bf16, not the f32 its model name 'ir-fp32' says"):
        r.activate()
