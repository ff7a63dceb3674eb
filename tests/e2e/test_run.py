"""End to end on the embedded default (toy detector + generated sample, full 640 input): run, gate against
the committed baseline, a deliberately broken IR caught by the gate, and run comparison."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssh_toolkit.cli import app
from ssh_toolkit.pipeline import default_baseline

pytestmark = pytest.mark.slow  # full 640x640 runs: not in the fast lane (pytest -m "not slow")

runner = CliRunner()
BASELINE = Path(__file__).resolve().parents[2] / "ssh_toolkit" / "baselines" / "ssh-mxnet-toy-640.json"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    result = run("run", "-w", root / "ws", "--report-dir", root / "runs" / "good")
    return root, result


def test_default_baseline_is_committed(card):
    assert default_baseline(card, "toy", 640) == BASELINE
    assert BASELINE.is_file()
    data = json.loads(BASELINE.read_text())
    assert data["weights"] == "standin" and data["checkpoint_kind"] == "toy"


def test_run_on_the_embedded_default_passes_the_committed_baseline(default_run):
    root, r = default_run
    assert r.exit_code == 0, r.output
    good = root / "runs" / "good"
    assert "STAND-IN WEIGHTS" in r.output
    assert f"HTML report: {(good / 'report.html').resolve()}" in r.output
    assert "PASS | map_vs_baseline[mxnet]" in r.output and "gate PASS" in r.output
    summary = json.loads((good / "summary.json").read_text())
    maps = summary["map"]
    from ssh_toolkit.runners.openvino import default_exec_precision

    deploy = default_exec_precision()  # bf16 on a CPU with avx512_bf16/AMX: the deploy default is its own model
    extra = set() if deploy == "f32" else {f"ir-fp32@{deploy}", f"ir-fp16@{deploy}"}
    int8 = {"ir-int8"} | ({f"ir-int8@{deploy}"} if deploy != "f32" else set())
    assert set(maps) == {"mxnet", "ir-fp32", "ir-fp16"} | extra | int8
    for m in extra:
        assert f"parity[{m}]: PASS" in r.output and m in summary["parity"]
    # run quantizes on the embedded default; INT8 is gated on its mAP drop and box match rate, its numeric
    # differences only reported.
    assert "quantize INT8: quantized in" in r.output
    for m in int8:
        for rule in ("map_vs_baseline", "ir_vs_mxnet_drop", "box_match_rate"):
            assert f"PASS | {rule}[{m}] |" in r.output, (rule, m)
        assert f"SKIP | parity[{m}/*] |" in r.output and f"parity[{m}]: reported, not gated" in r.output
    assert (root / "ws" / "ir" / "toy-640" / "INT8" / "conversion.json").is_file()
    assert 10 < maps["mxnet"] < 90  # a real detector on the sample, not a constant
    assert abs(maps["mxnet"] - maps["ir-fp32"]) < 0.01
    html = (good / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3 and "STAND-IN WEIGHTS" in html


def test_second_run_reuses_everything(default_run):
    root, _ = default_run
    r = run("run", "-w", root / "ws", "--report-dir", root / "runs" / "again")
    assert r.exit_code == 0, r.output
    assert "convert FP32: up to date" in r.output and "convert FP16: up to date" in r.output
    assert "quantize INT8: up to date" in r.output
    assert r.output.count("from cache") == len(json.loads((root / "runs" / "again" / "summary.json").read_text())["map"])


def _perturb_ir(xml: Path, const_name: str, delta: float) -> None:
    """Add ``delta`` to the first value of a named f32 constant in the IR's .bin."""
    layer = next(el for el in ET.parse(xml).getroot().iter("layer") if el.get("name") == const_name)
    data = layer.find("data")
    assert data.get("element_type") == "f32"
    offset = int(data.get("offset"))
    bin_path = xml.with_suffix(".bin")
    blob = bytearray(bin_path.read_bytes())
    (value,) = struct.unpack_from("<f", blob, offset)
    struct.pack_into("<f", blob, offset, value + delta)
    bin_path.write_bytes(bytes(blob))


def test_a_broken_ir_fails_the_gate_naming_rules(default_run, tmp_path):
    root, _ = default_run
    ws = tmp_path / "ws"
    shutil.copytree(root / "ws", ws)  # with the cache: it is keyed by the IR's content, so no stale hit
    xml = ws / "ir" / "toy-640" / "FP32" / "sshb.xml"
    _perturb_ir(xml, "rpn_bbox_pred_stride8_weight", 0.5)
    bad = tmp_path / "bad"
    r = run("evaluate", "-w", ws, "--report-dir", bad)  # an IR changed after conversion is refused ...
    assert r.exit_code == 2 and "sshb.bin: changed since conversion" in r.output, r.output
    record = xml.parent / "conversion.json"  # ... so record the change: a conversion that produced a broken IR
    rec = json.loads(record.read_text())
    rec["sha256"]["bin"] = hashlib.sha256(xml.with_suffix(".bin").read_bytes()).hexdigest()
    record.write_text(json.dumps(rec))
    r = run("evaluate", "-w", ws, "--report-dir", bad)
    assert r.exit_code == 1, r.output  # a failed parity verdict; the run folder is kept for the gate
    lines = {ln.split(" = ")[0]: ln for ln in r.output.splitlines() if ln.startswith("map[")}
    for model, line in lines.items():  # the edited IR ran again, at every execution precision; nothing else did
        assert ("14 inferred" if model.startswith("map[ir-fp32") else "from cache") in line, line
    assert {"map[mxnet]", "map[ir-fp32]", "map[ir-fp16]"} <= set(lines)
    r = run("gate", bad, "--baseline", BASELINE)
    assert r.exit_code == 1, r.output
    failed = re.findall(r"^FAIL \| (\S+)", r.output, re.M)
    assert "parity[ir-fp32/rpn_bbox_pred_stride8]" in failed
    assert all("ir-fp16" not in f for f in failed)  # only the broken IR is blamed
    line = next(ln for ln in r.output.splitlines() if ln.startswith("FAIL | parity[ir-fp32/rpn_bbox_pred_stride8]"))
    # The gate shows the verdict and reason the run recorded, word for word.
    rec = json.loads((bad / "summary.json").read_text())["parity"]["ir-fp32"]["rpn_bbox_pred_stride8"]
    assert rec["passed"] is False and re.search(r"exceeds it by \d", rec["reason"])
    assert line == f"FAIL | parity[ir-fp32/rpn_bbox_pred_stride8] | {rec['reason']} (FP32)"
    assert re.search(r"gate FAIL: \d+ of \d+ checks failed", r.output)


def test_gate_errors_and_report_comparison(default_run, tmp_path):
    root, _ = default_run
    r = run("gate", tmp_path / "missing-run", "--baseline", BASELINE)
    assert r.exit_code == 2
    assert r.output.strip() == f"ssh-toolkit: error: {tmp_path / 'missing-run'}: run folder not found"
    r = run("gate", root / "runs" / "good", "--baseline", tmp_path / "none.json")
    assert r.exit_code == 2 and "none.json" in r.output
    out = tmp_path / "cmp.html"
    r = run("report", root / "runs" / "good", root / "runs" / "again", "--out", out)
    assert r.exit_code == 0, r.output
    assert "good" in r.output and "again" in r.output and "delta" in r.output
    assert re.search(r"map\[mxnet\]\s+[\d.]+\s+[\d.]+\s+[+-]?0\.0+", r.output), r.output
    assert out.is_file() and "data:image/png;base64," in out.read_text()


def test_readme_python_api_example_runs(default_run, monkeypatch):
    """The README's notebook example, executed as written against the default run's workspace."""
    root, _ = default_run
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "README.md").read_text()
    code = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("SSH_TOOLKIT_WORKSPACE", str(root / "ws"))
    scope: dict = {}
    try:
        exec(compile(code, "README.md", "exec"), scope)
        assert scope["ev"].summary.map["mxnet"] > 10
        inferred = scope["ev"].inferred
        assert {"mxnet", "ir-fp32", "ir-fp16"} <= set(inferred) and set(inferred.values()) == {0}  # all cached
    finally:
        if "ev" in scope:
            shutil.rmtree(scope["ev"].run_dir, ignore_errors=True)
