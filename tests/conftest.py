"""Shared, session-scoped artifacts: generating and converting checkpoints costs seconds, so do it once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from ssh_toolkit.card import load_card
from ssh_toolkit.workspace import Workspace

SMALL = 128  # input size for fast numeric tests (a multiple of 32)


@pytest.fixture(scope="session")
def card():
    return load_card()


@pytest.fixture(scope="session")
def standin_ws(tmp_path_factory, card):
    """A workspace with the seeded stand-in checkpoint converted to FP32 and FP16 at SMALL input size."""
    from ssh_toolkit.convert import convert
    from ssh_toolkit.standins.synthesize import synthesize_standin

    ws = Workspace(tmp_path_factory.mktemp("standin-ws"))
    ck = synthesize_standin(card, ws.checkpoint_dir("standin"), seed=0)
    irs = {p: convert(card, ck, ws, p, SMALL) for p in card.precisions}
    return ws, ck, irs


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    from ssh_toolkit.data.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("data") / "wider-sample", seed=0)


# ------------------------------------------------------------------- official WIDER ground truth (.mat) files


def cell(items, shape=None):
    a = np.empty(len(items) if shape is None else shape, dtype=object)
    a = a.reshape(len(items), 1)
    for i, it in enumerate(items):
        a[i, 0] = it
    return a


def write_mats(folder, scene, skip=(), corrupt=None):
    """scene: {event: [(name, boxes_xywh (k,4), {setting: [1-based idx]}), ...]} -> the four official files,
    nested like the real ones: (E,1) cells of (n,1) cells."""
    folder.mkdir(parents=True, exist_ok=True)
    events = list(scene)
    face = {
        "event_list": cell(events),
        "file_list": cell([cell([name for name, _, _ in scene[e]]) for e in events]),
        "face_bbx_list": cell([cell([np.asarray(b, np.float64).reshape(-1, 4) for _, b, _ in scene[e]])
                               for e in events]),
    }
    files = {"wider_face_val.mat": face}
    for s in ("easy", "medium", "hard"):
        gt_list = cell([cell([np.array(k.get(s, []), np.float64).reshape(-1, 1) for _, _, k in scene[e]])
                        for e in events])
        files[f"wider_{s}_val.mat"] = {"gt_list": gt_list}
    for name, content in files.items():
        if name not in skip:
            scipy.io.savemat(str(folder / name), content)
    return folder


@pytest.fixture(scope="session")
def mo_env():
    """The legacy Model Optimizer / Accuracy Checker environment (created on first use, then reused)."""
    from ssh_toolkit.legacy_env import ensure_mo_env

    return ensure_mo_env()
