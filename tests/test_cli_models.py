"""Which models evaluate runs, as the command line says it: left-out IRs named with the command that makes them."""

from __future__ import annotations

import shutil

import pytest
from conftest import SMALL
from typer.testing import CliRunner

from ssh_toolkit.cli import app

pytestmark = pytest.mark.slow  # uses the standin_ws fixture (Model Optimizer twice)

def _ws_with_fp32_only(standin_ws, tmp_path):
    ws, _, _ = standin_ws
    dst = tmp_path / "ws"
    shutil.copytree(ws.root, dst, ignore=shutil.ignore_patterns("cache"))
    shutil.rmtree(dst / "ir" / f"standin-{SMALL}" / "FP16")
    return dst


def test_left_out_models_are_named_with_the_convert_command(standin_ws, sample_root, tmp_path):
    ws = _ws_with_fp32_only(standin_ws, tmp_path)
    r = CliRunner().invoke(app, ["evaluate", "--weights", "standin", "--input-size", str(SMALL), "--limit", "1",
                                 "--data-root", str(sample_root), "--workspace", str(ws),
                                 "--report-dir", str(tmp_path / "run")])
    assert r.exit_code == 0, r.output
    assert (f"not evaluated: ir-fp16 (not converted at input size {SMALL}; run 'ssh-toolkit convert --weights standin "
            f"--input-size {SMALL} --precision FP16')") in r.output
    assert "map[ir-fp32]" in r.output and "map[ir-fp16]" not in r.output


def test_asking_for_a_model_not_converted_at_the_size_exits_2(standin_ws, sample_root, tmp_path):
    ws = _ws_with_fp32_only(standin_ws, tmp_path)
    r = CliRunner().invoke(app, ["evaluate", "--weights", "standin", "--input-size", str(SMALL), "--model",
                                 "ir-fp16", "--data-root", str(sample_root), "--workspace", str(ws)])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == (
        f"ssh-toolkit: error: --model ir-fp16: not converted at input size {SMALL}; run 'ssh-toolkit convert "
        f"--weights standin --input-size {SMALL} --precision FP16' first")


def test_evaluate_input_size_not_a_multiple_of_the_largest_stride_exits_2(standin_ws, sample_root, tmp_path):
    ws = _ws_with_fp32_only(standin_ws, tmp_path)
    r = CliRunner().invoke(app, ["evaluate", "--weights", "standin", "--input-size", "100", "--data-root",
                                 str(sample_root), "--workspace", str(ws)])
    assert r.exit_code == 2 and "--input-size 100: must be a positive multiple of 32" in r.output
