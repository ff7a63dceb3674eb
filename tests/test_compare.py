"""compare: the same cached inference phase as evaluate, so a second compare infers nothing."""

from __future__ import annotations

import pytest

from ssh_toolkit.compare import list_images, run_parity
from ssh_toolkit.inference import model_set, run_models, scan_images

pytestmark = pytest.mark.slow  # uses the standin_ws fixture (Model Optimizer twice)

def test_compare_caches_and_shares_the_cache_with_evaluate(card, standin_ws, sample_root, tmp_path):
    import shutil

    from ssh_toolkit.workspace import Checkpoint, Workspace

    src, _, irs = standin_ws
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(src.root, ws.root, ignore=shutil.ignore_patterns("cache"))
    ck = Checkpoint.load(ws.checkpoint_dir("standin"))
    irs = [irs["FP32"].__class__.load(ws.ir_dir("standin", irs["FP32"].input_size, "FP32"))]
    images = list_images(sample_root / "WIDER_val" / "images", 2)
    first = run_parity(card, ck, irs, images, ws, progress=False)
    assert first.inferred == {"mxnet": 2, "ir-fp32": 2}
    again = run_parity(card, ck, irs, images, ws, progress=False, swap_channels_check=True)
    assert again.inferred == {"mxnet": 0, "ir-fp32": 0}
    assert again.results[0].to_frame().equals(first.results[0].to_frame())
    assert not again.self_check[0]  # the swapped channels are caught, and never cached
    # evaluate's phase finds the same entries
    models = model_set(card, ck, irs, irs[0].input_size)
    _, inferred = run_models(card, models, scan_images(images, progress=False), ws, irs[0].input_size,
                             progress=False)
    assert inferred == {"mxnet": 0, "ir-fp32": 0}
