"""Where native IRs live and how their records read: fast, no conversion."""

from __future__ import annotations

import json

from ssh_toolkit.convert import ConvertedModel
from ssh_toolkit.workspace import Workspace


def _record(**extra) -> dict:
    return {"prefix": "sshb", "precision": "FP16", "input_size": 128, "checkpoint_kind": "toy", "weights": "standin",
            "command": ["mo"], "mo_version": "2023.3.0", "seconds": 1.0, "inputs": {}, "outputs": {},
            "sha256": {}, "fingerprint": "f", **extra}


def test_ir_folders_per_route(tmp_path):
    ws = Workspace(tmp_path)
    assert ws.ir_dir("toy", 640, "FP32") == tmp_path / "ir" / "toy-640" / "FP32"  # Model Optimizer: unchanged
    assert ws.ir_dir("toy", 640, "FP32", "mo") == ws.ir_dir("toy", 640, "FP32")
    assert ws.ir_dir("toy", 640, "FP16", "native") == tmp_path / "ir" / "toy-640" / "native" / "FP16"


def test_a_record_written_before_the_native_route_is_model_optimizers(tmp_path):
    (tmp_path / "conversion.json").write_text(json.dumps(_record()))
    ir = ConvertedModel.load(tmp_path)
    assert ir.route == "mo" and not ir.dynamic and ir.model_name == "ir-fp16"
    assert ir.convert_command().endswith("--precision FP16")


def test_a_native_record_names_its_model_and_command(tmp_path):
    (tmp_path / "conversion.json").write_text(json.dumps(_record(route="native", dynamic=True, command=["native"])))
    ir = ConvertedModel.load(tmp_path)
    assert ir.model_name == "ir-native-fp16"
    assert ir.convert_command() == ("ssh-toolkit convert --force --weights toy --input-size 128 --precision FP16 "
                                    "--route native --dynamic-shape")
    assert ir.to_json()["route"] == "native"


def test_the_op_table_of_the_docs_lists_every_supported_op():
    from pathlib import Path

    from ssh_toolkit.native.ops import OPS

    text = (Path(__file__).resolve().parents[2] / "docs" / "native.md").read_text()
    table = text[text.index("## Op table"):text.index("### The pitfalls")]
    listed = set()
    for cell in (row.split("|")[1] for row in table.splitlines() if row.startswith("| `")):
        for name in cell.replace("`", "").split(","):
            stem, *rest = name.strip().split("/")
            listed.add(stem)
            prefix = stem.rsplit("_", 1)[0] + "_" if rest else ""
            listed.update(prefix + r for r in rest)
    assert sorted(set(OPS) - listed) == [] and sorted(listed - set(OPS)) == []


def test_doctor_lists_the_irs_of_both_routes(tmp_path):
    from ssh_toolkit.doctor import workspace_irs

    ws = Workspace(tmp_path)
    for route in ("mo", "native"):
        d = ws.ir_dir("toy", 128, "FP32", route)
        d.mkdir(parents=True)
        (d / "sshb.xml").write_text("<net/>")
    assert workspace_irs(ws) == [(tmp_path / "ir/toy-128/FP32/sshb.xml").resolve(),
                                 (tmp_path / "ir/toy-128/native/FP32/sshb.xml").resolve()]
