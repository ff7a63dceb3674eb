"""``convert --route native`` on the stand-ins: the IR record, the up-to-date check, the error for an unsupported op,
no MXNet, and the acceptance check: native FP32/FP16 IRs of the standin equal Model Optimizer's outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import SMALL
from typer.testing import CliRunner

from ssh_toolkit.cli import app
from ssh_toolkit.compare import list_images, run_parity
from ssh_toolkit.convert import ConvertedModel, convert
from ssh_toolkit.errors import UsageError
from ssh_toolkit.evaluation import load_irs
from ssh_toolkit.fileio import MARKER
from ssh_toolkit.workspace import Checkpoint, Workspace

pytestmark = pytest.mark.slow  # stand-in checkpoints (MXNet), Model Optimizer IRs, subprocesses


@pytest.fixture(scope="module")
def toy(tmp_path_factory, card):
    from ssh_toolkit.standins.toy import synthesize_toy

    ws = Workspace(tmp_path_factory.mktemp("native-toy"))
    return ws, synthesize_toy(card, ws.checkpoint_dir("toy"))


@pytest.fixture(scope="module")
def both_routes(tmp_path_factory, card, standin_ws):
    """The session's standin workspace (checkpoint and Model Optimizer IRs, hard-linked: the session's own
    workspace stays as other tests expect it) plus native FP32 and FP16 IRs."""
    import os

    ws, _, _ = standin_ws
    root = tmp_path_factory.mktemp("both-routes") / "ws"
    shutil.copytree(ws.root, root, copy_function=os.link, ignore=shutil.ignore_patterns("cache"))
    copy = Workspace(root)
    ck = Checkpoint.load(copy.checkpoint_dir("standin"))
    mo = {p: ConvertedModel.load(copy.ir_dir("standin", SMALL, p)) for p in card.precisions}
    native = {p: convert(card, ck, copy, p, SMALL, route="native") for p in card.precisions}
    return copy, ck, mo, native


def test_record_names_and_up_to_date_skip(card, toy):
    ws, ck = toy
    ir = convert(card, ck, ws, "FP32", SMALL, route="native")
    assert ir.directory == ws.root / "ir" / f"toy-{SMALL}" / "native" / "FP32"
    assert ir.model_name == "ir-native-fp32" and not ir.reused
    rec = json.loads((ir.directory / "conversion.json").read_text())
    assert rec["route"] == "native" and rec["dynamic"] is False and rec["mo_version"] == ""
    assert rec["command"][0] == "native" and "--reverse_input_channels" in rec["command"]
    assert rec["inputs"] == {"data": [1, 3, SMALL, SMALL]}
    assert {n.removesuffix(":0"): s for n, s in rec["outputs"].items()}["rpn_bbox_pred_stride8"] == \
        [1, 8, SMALL // 8, SMALL // 8]
    assert rec["versions"]["native_translator"].startswith("native-")
    assert json.loads((ir.directory / MARKER).read_text())["kind"] == "ir"
    assert ConvertedModel.load(ir.directory) == ir
    again = convert(card, ck, ws, "FP32", SMALL, route="native")
    assert again.reused and again.sha256 == ir.sha256
    assert not convert(card, ck, ws, "FP32", SMALL, route="native", force=True).reused
    assert [i.model_name for i in load_irs(card, ck, ws, SMALL)] == ["ir-native-fp32"]  # no MO IR here
    assert ir.convert_command().endswith("--precision FP32 --route native")


def test_dynamic_shape_needs_the_native_route(card, toy):
    ws, ck = toy
    with pytest.raises(UsageError, match="--dynamic-shape needs --route native"):
        convert(card, ck, ws, "FP32", SMALL, dynamic=True)
    ir = convert(card, ck, ws, "FP16", SMALL, route="native", dynamic=True)
    assert ir.directory == ws.root / "ir" / "toy-dynamic" / "native" / "FP16"
    assert ir.inputs == {"data": [1, 3, -1, -1]} and ir.dynamic


def test_an_unsupported_op_exits_2_naming_node_and_op_and_writes_nothing(card, toy, tmp_path):
    ws, ck = toy
    copy = Workspace(tmp_path / "ws")
    shutil.copytree(ck.directory, copy.checkpoint_dir("toy"))
    symbol = copy.checkpoint_dir("toy") / ck.symbol_path.name
    doc = json.loads(symbol.read_text())
    node = next(n for n in doc["nodes"] if n["name"] == "toy_mask")
    node["op"] = "Embedding"
    symbol.write_text(json.dumps(doc))
    r = CliRunner().invoke(app, ["convert", "--route", "native", "-w", str(copy.root), "--weights", "toy",
                                 "--input-size", str(SMALL), "--precision", "FP32"])
    assert r.exit_code == 2, r.output
    assert f"{symbol}: node 'toy_mask': op 'Embedding' is not supported by the native route" in r.output
    assert "use --route mo" in r.output and "Traceback" not in r.output
    assert not (copy.root / "ir").exists() or not any((copy.root / "ir").rglob("*.xml"))


def test_the_native_route_never_imports_mxnet(card, toy, tmp_path):
    """MXNet blocked in a fresh interpreter: the translation, the save and the record still work."""
    ws, ck = toy
    code = (
        "import sys; sys.modules['mxnet'] = None\n"
        "from pathlib import Path\n"
        "from ssh_toolkit.card import load_card\n"
        "from ssh_toolkit.convert import convert\n"
        "from ssh_toolkit.workspace import Checkpoint, Workspace\n"
        f"ck = Checkpoint.load(Path({str(ck.directory)!r}))\n"
        f"ir = convert(load_card(), ck, Workspace(Path({str(tmp_path)!r})), 'FP32', {SMALL}, route='native')\n"
        "assert sys.modules['mxnet'] is None\n"
        "print(ir.xml)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith(f"toy-{SMALL}/native/FP32/sshb.xml")


def test_native_irs_of_the_standin_equal_model_optimizers(card, both_routes, sample_root):
    """Acceptance: on every sample image, each output of ir-native-fp32/fp16 equals ir-fp32/fp16 exactly (f32
    execution), and passes the MXNet parity of its precision like Model Optimizer's."""
    ws, ck, mo_irs, by_precision = both_routes
    native = list(by_precision.values())
    assert load_irs(card, ck, ws, SMALL) == [*mo_irs.values(), *native]  # both routes, Model Optimizer's first
    images = list_images(sample_root)
    run = run_parity(card, ck, [*mo_irs.values(), *native], images, ws, progress=False)
    assert len(images) == 14
    assert {r["native"] for r in run.routes} == {"ir-native-fp32", "ir-native-fp16"}
    assert len(run.routes) == 2 * len(card.output_names)
    worst = {(r["native"], r["output"]): r["max_abs"] for r in run.routes}
    assert all(r["identical"] for r in run.routes), worst
    assert all(r["n_images"] == 14 for r in run.routes)
    assert bool(run) and {r.test for r in run.results} == {"ir-fp32", "ir-fp16", "ir-native-fp32", "ir-native-fp16"}
    # the native IR is a different file, with MXNet's head names besides Model Optimizer's ":0" names
    import openvino as ov

    model = ov.Core().read_model(native[0].xml)
    names = [o.get_names() for o in model.outputs]
    assert {"rpn_bbox_pred_stride8", "rpn_bbox_pred_stride8:0"} in names
    assert all(len(n) == 2 for n in names)
    internal = {n for op in model.get_ordered_ops() for o in op.outputs() for n in o.get_names()}
    assert {"conv4_2", "conv4_2:0", "ssh_m1_red_crop", "ssh_m2_red_upsampling:0"} <= internal
    assert native[0].sha256 != mo_irs["FP32"].sha256
    # a dynamic native IR gives the same outputs as the fixed one at this size
    dyn = convert(card, ck, ws, "FP32", SMALL, route="native", dynamic=True)
    core = ov.Core()
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, SMALL, SMALL)).astype(np.float32)

    def outputs(xml):
        res = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({0: x})
        return {min(o.get_names()).removesuffix(":0"): v for o, v in res.items()}

    fixed, dynamic = outputs(mo_irs["FP32"].xml), outputs(dyn.xml)
    for name in card.output_names:
        np.testing.assert_array_equal(dynamic[name], fixed[name])


def test_cli_convert_native_and_compare_prints_native_vs_mo(card, both_routes, sample_root, tmp_path):
    ws, ck, _, _ = both_routes
    runner = CliRunner()
    r = runner.invoke(app, ["convert", "--route", "native", "-w", str(ws.root), "--weights", "standin",
                            "--input-size", str(SMALL)])
    assert r.exit_code == 0, r.output
    assert f"FP32: {ws.ir_dir('standin', SMALL, 'FP32', 'native') / 'sshb.xml'} (up to date" in r.output
    out = tmp_path / "cmp"
    r = runner.invoke(app, ["compare", "-w", str(ws.root), "--weights", "standin", "--input-size", str(SMALL),
                            "--images", str(sample_root), "--limit", "2", "--report-dir", str(out)])
    assert r.exit_code == 0, r.output
    for name in card.output_names:
        assert f"[ir-native-fp32 vs ir-fp32] {name}: max_abs=0.000e+00 (identical)" in r.output
        assert f"[ir-native-fp16 vs ir-fp16] {name}: max_abs=0.000e+00 (identical)" in r.output
    table = json.loads((out / "native_vs_mo.json").read_text())
    assert len(table) == 2 * len(card.output_names) and all(row["max_abs"] == 0 for row in table)
    assert "## Native route vs Model Optimizer" in (out / "report.md").read_text()
    assert Checkpoint.load(ck.directory) == ck


def test_compare_runs_on_native_irs_alone(card, toy, sample_root, tmp_path):
    """A workspace with only the native route's IRs (no Model Optimizer at hand): compare checks them against
    MXNet instead of asking for Model Optimizer's; with neither route converted it names both commands."""
    ws, ck = toy
    convert(card, ck, ws, "FP32", SMALL, route="native")
    assert not ws.ir_dir("toy", SMALL, "FP32").exists()
    args = ["compare", "-w", str(ws.root), "--weights", "toy", "--input-size", str(SMALL), "--images",
            str(sample_root), "--limit", "1", "--precision", "FP32"]
    r = CliRunner().invoke(app, [*args, "--report-dir", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    assert "[ir-native-fp32] PASS" in r.output and "vs ir-fp32" not in r.output
    r = CliRunner().invoke(app, [*args, "--input-size", "96", "--report-dir", str(tmp_path / "none")])
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == (
        f"ssh-toolkit: error: {ws.ir_dir('toy', 96, 'FP32')}: not converted; run 'ssh-toolkit convert --weights toy "
        "--input-size 96 --precision FP32' (or the same with --route native) first")
