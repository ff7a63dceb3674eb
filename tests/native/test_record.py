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


def test_a_record_that_disagrees_with_its_folder_is_refused(tmp_path, card):
    """A native IR's record without its route (edited, or copied from Model Optimizer's folder) made two models
    named ir-fp16 in one run; the record must say the route and precision of the folder it lies in."""
    from types import SimpleNamespace

    import pytest

    from ssh_toolkit.errors import InputDataError
    from ssh_toolkit.evaluation import load_irs

    ws = Workspace(tmp_path)
    ck = SimpleNamespace(kind="toy")
    for route in ("mo", "native"):
        folder = ws.ir_dir("toy", 128, "FP16", route)
        folder.mkdir(parents=True)
        (folder / "conversion.json").write_text(json.dumps(_record(route=route)))
    assert [ir.model_name for ir in load_irs(card, ck, ws, 128)] == ["ir-fp16", "ir-native-fp16"]
    native = ws.ir_dir("toy", 128, "FP16", "native") / "conversion.json"
    native.write_text(json.dumps(_record()))  # no route: read as Model Optimizer's
    with pytest.raises(InputDataError) as e:
        load_irs(card, ck, ws, 128)
    assert str(e.value) == (f"{native}: records Model Optimizer's FP16 IR, but this is the folder of the native "
                            "route's FP16 IR; run 'ssh-toolkit convert --force --weights toy --input-size 128 "
                            "--precision FP16 --route native'")
    native.write_text(json.dumps(_record(route="native", precision="FP32")))
    with pytest.raises(InputDataError, match="records the native route's FP32 IR, but this is the folder of the "
                                             "native route's FP16 IR"):
        load_irs(card, ck, ws, 128)


def test_mo_env_with_the_native_route_is_a_usage_error(tmp_path):
    """--mo-env names Model Optimizer's environment; the native route runs none, so the pair is refused (exit 2),
    as --dynamic-shape without --route native is, instead of ignoring it."""
    from typer.testing import CliRunner

    from ssh_toolkit.cli import app

    r = CliRunner().invoke(app, ["convert", "--route", "native", "--mo-env", str(tmp_path / "env"), "-w",
                                 str(tmp_path / "ws")])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == ("ssh-toolkit: error: --mo-env names Model Optimizer's environment; --route native "
                                "converts without Model Optimizer")
