"""Shared, session-scoped artifacts: generating and converting checkpoints costs seconds, so do it once."""

from __future__ import annotations

from pathlib import Path

import pytest

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
    from ssh_toolkit.synthesize import synthesize_standin

    ws = Workspace(tmp_path_factory.mktemp("standin-ws"))
    ck = synthesize_standin(card, ws.checkpoint_dir("standin"), seed=0)
    irs = {p: convert(card, ck, ws, p, SMALL) for p in card.precisions}
    return ws, ck, irs


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory) -> Path:
    from ssh_toolkit.sample import make_sample

    return make_sample(tmp_path_factory.mktemp("data") / "wider-sample", seed=0)
