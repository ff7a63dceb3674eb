"""ssh-toolkit quantize: NNCF INT8 with accuracy control on the toy detector (small input size), its record, the
up-to-date skip, the unreachable drop limit, calibration data errors and the same-folder note."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ssh_toolkit.cli import app
from ssh_toolkit.convert import ConvertedModel
from ssh_toolkit.data.sample import make_sample
from ssh_toolkit.errors import GateFailure, InputDataError
from ssh_toolkit.model.detections import Detections
from ssh_toolkit.quantize import (
    SAME_FOLDER_NOTE,
    QuantizedModel,
    calibration_images,
    map_with_per_image,
    quantize,
    quantize_in_child,
)
from ssh_toolkit.workspace import Workspace

SIZE = 160  # the toy converts and quantizes in seconds here
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------------ fast: the parts


def _dets(*boxes_scores):
    boxes = np.array([b for b, _ in boxes_scores], np.float64).reshape(-1, 4)
    return Detections(boxes, np.array([s for _, s in boxes_scores], np.float32))


def test_the_metric_returns_the_map_and_each_images_own_ap(card):
    face = [100.0, 100.0, 199.0, 199.0]  # 100 px high: a positive face under the protocol
    other = [300.0, 300.0, 399.0, 399.0]
    items = [
        ("a", _dets((face, 0.9)), np.array([face])),                    # found: AP 100
        ("b", _dets((other, 0.8)), np.array([face])),                   # a false positive, face missed: AP 0
        ("c", _dets(), np.array([face, other])),                        # nothing found: AP 0
    ]
    value, per_image = map_with_per_image(card, items)
    assert per_image == [100.0, 0.0, 0.0]
    # All images: 4 faces; ranked detections: TP (0.9), FP (0.8) -> precision 1 at recall 1/4: VOC AP = 25 %.
    assert value == pytest.approx(25.0)


def test_calibration_images_are_drawn_with_the_seed(sample_root):
    a = calibration_images(sample_root, 5, 300, seed=0)
    assert len(a.images) == 5 and a.identifiers == calibration_images(sample_root, 5, 300, seed=0).identifiers
    assert a.identifiers != calibration_images(sample_root, 5, 300, seed=1).identifiers
    assert a.keys == tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in a.paths)
    # The card's default asks for more than the sample holds: all of them, no error.
    assert len(calibration_images(sample_root, None, 300, seed=0).images) == 14


def test_fewer_calibration_images_than_asked_or_none_readable_is_an_input_error(sample_root, tmp_path):
    with pytest.raises(InputDataError, match=r"--calibration-images 15 asked, but only 14 of the 14 listed images "
                                             r"are present"):
        calibration_images(sample_root, 15, 300, seed=0)
    root = tmp_path / "empty"
    shutil.copytree(sample_root, root)
    for jpg in (root / "WIDER_val" / "images").rglob("*.jpg"):
        jpg.unlink()
    with pytest.raises(InputDataError, match=r"no readable calibration image \(none of the 14 images listed"):
        calibration_images(root, None, 300, seed=0)
    first = sorted((sample_root / "WIDER_val" / "images").rglob("*.jpg"))
    shutil.rmtree(root)
    shutil.copytree(sample_root, root)
    for jpg in (root / "WIDER_val" / "images").rglob("*.jpg"):
        jpg.write_bytes(b"not a jpeg")
    with pytest.raises(InputDataError, match="cannot decode image"):
        calibration_images(root, 3, 300, seed=0)
    assert first  # the sample itself was not touched
    assert all(p.stat().st_size > 100 for p in first)


# ------------------------------------------------------------------------------------------ slow: real quantization


@pytest.fixture(scope="module")
def int8_ws(tmp_path_factory, card):
    """The toy converted to FP32 at SIZE and quantized with the card's defaults on the generated sample."""
    from ssh_toolkit.convert import convert
    from ssh_toolkit.standins.toy import synthesize_toy

    ws = Workspace(tmp_path_factory.mktemp("int8-ws"))
    ck = synthesize_toy(card, ws.checkpoint_dir("toy"))
    make_sample(ws.sample_data, seed=0)
    convert(card, ck, ws, "FP32", SIZE)
    # In a child process, as 'run' does: the tests below run inference in this one.
    q = quantize_in_child(card, ck, ws, ws.sample_data, input_size=SIZE, progress=False)
    return ws, ck, q


def _copy(ws: Workspace, tmp_path: Path) -> Workspace:
    dst = tmp_path / "ws"
    shutil.copytree(ws.root, dst, ignore=shutil.ignore_patterns("cache"))
    return Workspace(dst)


@pytest.mark.slow
def test_quantize_stays_within_the_drop_and_records_how(int8_ws, card):
    from importlib.metadata import version

    ws, ck, q = int8_ws
    assert q.directory == ws.ir_dir("toy", SIZE, "INT8") and q.xml.is_file() and q.bin.is_file()
    assert q.achieved_drop <= card.quantize.max_drop == q.max_drop
    assert q.achieved_drop == pytest.approx(q.map_fp32 - q.map_int8)
    rec = QuantizedModel.load(q.directory)
    assert rec == q
    assert (rec.precision, rec.model_name, rec.input_size, rec.checkpoint_kind) == ("INT8", "ir-int8", SIZE, "toy")
    assert rec.nncf_version == version("nncf") == "3.4.0" and rec.openvino_version == version("openvino")
    assert rec.versions["nncf"] == "3.4.0"
    cal = rec.calibration
    assert cal["n_images"] == 14 and len(cal["identifiers"]) == 14 and cal["seed"] == 0
    assert cal["identifiers_sha256"] == hashlib.sha256("\n".join(cal["identifiers"]).encode()).hexdigest()
    assert cal["same_folder_as_evaluation"] is True and rec.calibration_note == SAME_FOLDER_NOTE
    assert rec.validation["n_images"] == 14
    fp32 = ConvertedModel.load(ws.ir_dir("toy", SIZE, "FP32"))
    assert (rec.source["fingerprint"], rec.source["sha256"], rec.source["precision"]) == (
        fp32.fingerprint, fp32.sha256, "FP32")
    # Operations put back in float were quantized in the fully quantized model; the rest run in INT8.
    assert rec.n_int8_layers > 0 and len(set(rec.float_layers)) == len(rec.float_layers)
    assert rec.seconds > 0 and len(rec.tried) >= 1
    rec.check_files()  # the sha256 it recorded are the files'


@pytest.mark.slow
def test_evaluate_finds_ir_int8_and_measures_the_recorded_map(int8_ws, card, tmp_path, monkeypatch):
    """The mAP the quantizer measured (its own validation loop) is the one evaluate measures (the runners' async
    queue, the cache, the same decoder): two independent paths over the same 14 images."""
    from ssh_toolkit.evaluation import evaluate, load_irs

    ws, ck, q = int8_ws
    monkeypatch.chdir(tmp_path)
    irs = load_irs(card, ck, ws, SIZE)
    assert [ir.model_name for ir in irs] == ["ir-fp32", "ir-int8"] and isinstance(irs[1], QuantizedModel)
    ev = evaluate(card, ck, irs, ws.sample_data, ws, input_size=SIZE, run_dir=tmp_path / "run", progress=False,
                  exec_precisions=("f32",))
    assert ev.summary.map["ir-int8"] == pytest.approx(q.map_int8, abs=1e-9)
    assert ev.summary.map["ir-fp32"] == pytest.approx(q.map_fp32, abs=1e-9)
    # Numeric differences are recorded without a tolerance; the gate shows them and does not judge them.
    parity = ev.summary.parity["ir-int8"]
    assert all(s.atol is None and s.min_cosine is None and s.passed for s in parity.values())
    from ssh_toolkit.gate import check_gate

    result = check_gate(ev.summary, None, card)
    names = {c.name: c for c in result.checks}
    assert names["parity[ir-int8/*]"].passed is None and "reported, not gated" in names["parity[ir-int8/*]"].detail
    assert names["ir_vs_mxnet_drop[ir-int8]"].limit == card.gates.ir_vs_mxnet_drop["INT8"]
    assert names["box_match_rate[ir-int8]"].limit == card.gates.min_box_match_rate["INT8"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## INT8 (ssh-toolkit quantize)" in report and SAME_FOLDER_NOTE in report
    from ssh_toolkit.report.html import write_html_report

    page = write_html_report(tmp_path / "run").read_text()
    assert "INT8 (ssh-toolkit quantize)" in page and f"ir-int8: {SAME_FOLDER_NOTE}" in page


@pytest.mark.slow
def test_an_up_to_date_int8_ir_is_not_quantized_again(int8_ws):
    ws, _, q = int8_ws
    before = q.xml.stat().st_mtime_ns
    r = cli("quantize", "-w", ws.root, "--weights", "toy", "--input-size", SIZE)
    assert r.exit_code == 0, r.output
    assert "up to date, not quantized again" in r.output
    assert q.xml.stat().st_mtime_ns == before


@pytest.mark.slow
def test_calibration_from_another_folder_is_not_up_to_date_and_carries_no_note(int8_ws, card, tmp_path):
    ws, ck, q = int8_ws
    ws = _copy(ws, tmp_path)
    other = make_sample(tmp_path / "other-sample", seed=3)
    r = cli("quantize", "-w", ws.root, "--weights", "toy", "--input-size", SIZE, "--calibration-root", other,
            "--calibration-images", 8)
    assert r.exit_code == 0, r.output
    assert "quantized in" in r.output and "note:" not in r.output
    rec = QuantizedModel.load(ws.ir_dir("toy", SIZE, "INT8"))
    assert rec.calibration["root"] == str(other) and rec.calibration["n_images"] == 8
    assert rec.calibration["same_folder_as_evaluation"] is False and rec.calibration_note == ""
    assert rec.fingerprint != q.fingerprint


@pytest.mark.slow
def test_too_few_calibration_images_is_exit_2_before_any_work(int8_ws, tmp_path):
    ws, _, _ = int8_ws
    ws = _copy(ws, tmp_path)
    shutil.rmtree(ws.ir_dir("toy", SIZE, "INT8"))
    r = cli("quantize", "-w", ws.root, "--weights", "toy", "--input-size", SIZE, "--calibration-images", 40)
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == (
        f"ssh-toolkit: error: {ws.sample_data / 'WIDER_val' / 'images'}: --calibration-images 40 asked, but only "
        f"14 of the 14 listed images are present")
    assert not ws.ir_dir("toy", SIZE, "INT8").exists()


@pytest.mark.slow
def test_an_unreachable_drop_limit_fails_with_the_best_drop_and_leaves_no_int8_ir(int8_ws, card, tmp_path):
    ws, ck, _ = int8_ws
    ws = _copy(ws, tmp_path)
    target = ws.ir_dir("toy", SIZE, "INT8")
    assert target.is_dir()  # the previous INT8 IR, made with another limit
    # No INT8 model gains 100 mAP points over FP32: the limit cannot be reached.
    with pytest.raises(GateFailure) as e:
        quantize(card, ck, ws, ws.sample_data, input_size=SIZE, max_drop=-100, progress=False, say=lambda m: None)
    msg = str(e.value)
    assert e.value.exit_code == 1
    assert "more than --max-drop -100; best drop achieved" in msg and "NNCF tried" in msg
    assert "no INT8 IR written (the previous one in" in msg
    assert not target.exists()
    assert sorted(p.name for p in target.parent.iterdir()) == ["FP32"]  # no temporary folder left either


@pytest.mark.slow
def test_an_interrupted_quantization_leaves_nothing(int8_ws, card, tmp_path, monkeypatch):
    from ssh_toolkit import quantize as q_module

    ws, ck, _ = int8_ws
    ws = _copy(ws, tmp_path)
    shutil.rmtree(ws.ir_dir("toy", SIZE, "INT8"))
    calls = []

    def interrupted(self, compiled, items):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, compiled, items)

    real = q_module.Validator.__call__
    monkeypatch.setattr(q_module.Validator, "__call__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        quantize(card, ck, ws, ws.sample_data, input_size=SIZE, force=True, progress=False, say=lambda m: None)
    assert sorted(p.name for p in ws.ir_dir("toy", SIZE, "FP32").parent.iterdir()) == ["FP32"]


@pytest.mark.slow
def test_benchmark_tables_every_variant_with_its_drop_and_speed_up(int8_ws, card, tmp_path):
    import json

    ws, ck, q = int8_ws
    r = cli("benchmark", "-w", ws.root, "--weights", "toy", "--input-size", SIZE, "--exec-precision", "f32",
            "--model", "mxnet", "--model", "ir-fp32", "--model", "ir-int8", "--report-dir", tmp_path / "bench")
    assert r.exit_code == 0, r.output
    rows = {row["model"]: row for row in json.loads((tmp_path / "bench" / "benchmark.json").read_text())}
    assert list(rows) == ["mxnet", "ir-fp32", "ir-int8"]
    assert rows["ir-int8"]["map_percent"] == pytest.approx(q.map_int8, abs=1e-9)  # all 14 images, afresh
    assert rows["ir-int8"]["drop_vs_mxnet"] == pytest.approx(rows["mxnet"]["map_percent"] - q.map_int8)
    assert rows["ir-fp32"]["speedup_vs_ir_fp32"] == 1.0
    i8 = rows["ir-int8"]
    assert i8["speedup_vs_ir_fp32"] == pytest.approx(i8["img_per_s"] / rows["ir-fp32"]["img_per_s"])
    assert i8["s_per_img"] == pytest.approx(1 / i8["img_per_s"]) and i8["n_images"] == 14
    assert (tmp_path / "bench" / "benchmark.csv").is_file()
    assert "| ir-int8 | INT8 | f32 | 14 |" in (tmp_path / "bench" / "report.md").read_text()
    assert "STAND-IN WEIGHTS" in r.output and f"table: {tmp_path / 'bench' / 'benchmark.csv'}" in r.output


@pytest.mark.slow
def test_compare_reports_int8_differences_and_leaves_it_out_of_the_channel_self_check(int8_ws, card):
    from ssh_toolkit.card import REPORTED_ONLY
    from ssh_toolkit.compare import run_parity

    ws, ck, q = int8_ws
    fp32 = ConvertedModel.load(ws.ir_dir("toy", SIZE, "FP32"))
    paths = sorted((ws.sample_data / "WIDER_val" / "images").rglob("*.jpg"))[:2]
    run = run_parity(card, ck, [fp32, q], paths, ws, swap_channels_check=True, progress=False)
    int8 = next(r for r in run.results if r.test == "ir-int8")
    assert int8 and all(d.tolerance == REPORTED_ONLY for d in int8.diffs)
    assert max(d.max_abs for d in int8.diffs) > 1e-3  # INT8 does change the raw outputs
    assert [r.test for r in run.self_check] == ["ir-fp32"]


@pytest.mark.slow
def test_localize_compares_the_int8_ir_layer_by_layer_with_the_cards_int8_threshold(int8_ws, card):
    from ssh_toolkit.localize import localize

    ws, ck, _ = int8_ws
    image = sorted((ws.sample_data / "WIDER_val" / "images").rglob("*.jpg"))[0]
    loc = localize(card, ck, ws, "ir-int8", image, input_size=SIZE, progress=False)
    assert (loc.precision, loc.threshold) == ("INT8", card.localize.threshold["INT8"])
    compared = [d for d in loc.layers if d.compared]
    assert compared and loc.first is None
    # Quantization noise is visible (unlike an f32 IR's ~1e-6) but far from the gross-error threshold.
    assert 1e-3 < max(d.scaled_max_abs for d in compared) < loc.threshold


@pytest.mark.slow
def test_quantize_in_a_child_process_returns_the_record_and_raises_the_same_errors(int8_ws, card, tmp_path):
    ws, ck, q = int8_ws
    again = quantize_in_child(card, ck, ws, ws.sample_data, input_size=SIZE, progress=False)
    assert again.reused and replace_reused(again) == replace_reused(q)
    copy = _copy(ws, tmp_path)
    with pytest.raises(GateFailure, match=r"quantize: the INT8 IR's mAP drop against the FP32 IR is .* more than "
                                          r"--max-drop -100; best drop achieved"):
        quantize_in_child(card, ck, copy, copy.sample_data, input_size=SIZE, max_drop=-100, force=True,
                          progress=False)
    assert not copy.ir_dir("toy", SIZE, "INT8").exists()


def replace_reused(q):
    import dataclasses

    return dataclasses.replace(q, reused=False)


# ------------------------------------------------------------------------------------------------ fast: records
def _record() -> dict:
    """A valid INT8 conversion.json (values made up; the types are what the readers rely on)."""
    return {"prefix": "sshb", "precision": "INT8", "input_size": SIZE, "checkpoint_kind": "toy", "weights": "standin",
            "command": ["ssh-toolkit", "quantize"], "mo_version": "2023.3.0", "seconds": 5.5,
            "inputs": {"data": [1, 3, SIZE, SIZE]}, "outputs": {"o:0": [1, 2, 5, 5]},
            "sha256": {"xml": "a" * 64, "bin": "b" * 64}, "fingerprint": "f" * 64, "source": {"sha256": {}},
            "calibration": {"root": "/data", "n_images": 14}, "validation": {"root": "/data", "n_images": 14},
            "max_drop": 1, "map_fp32": 66.7, "map_int8": 67.9, "achieved_drop": -1.2, "float_layers": ["a", "b"],
            "n_int8_layers": 10, "tried": [60.1, 67.9]}


@pytest.mark.parametrize("edit, message", [
    ({"calibration": 5}, "key 'calibration': expected a JSON object, got 5"),
    ({"calibration": {"n_images": 14}}, "key 'calibration.root': expected a string, got None"),
    ({"validation": {"n_images": "14"}}, "key 'validation.n_images': expected an integer, got '14'"),
    ({"max_drop": "x"}, "key 'max_drop': expected a number, got 'x'"),
    ({"float_layers": [1, 2]}, "key 'float_layers': expected a list of strings, got [1, 2]"),
    ({"tried": ["x"]}, "key 'tried': expected a list of numbers"),
    ({"sha256": 5}, "key 'sha256': expected a JSON object, got 5"),
    ({"sha256": {"xml": 1}}, "key 'sha256': expected strings"),
    ({"input_size": True}, "key 'input_size': expected an integer, got True"),
])
def test_an_edited_int8_record_is_refused_naming_the_key(tmp_path, edit, message):
    import json

    (tmp_path / "conversion.json").write_text(json.dumps(_record()))
    assert QuantizedModel.load(tmp_path).float_layers == ("a", "b")
    (tmp_path / "conversion.json").write_text(json.dumps({**_record(), **edit}))
    with pytest.raises(InputDataError, match="corrupt quantization record") as e:
        QuantizedModel.load(tmp_path)
    assert message in str(e.value)
    with pytest.raises(InputDataError, match="corrupt conversion record"):  # the same check for every IR record
        (tmp_path / "conversion.json").write_text(json.dumps([]))
        ConvertedModel.load(tmp_path)


def test_an_int8_ir_of_an_fp32_ir_converted_again_since_is_left_out_with_a_warning(tmp_path, card, capsys):
    """convert redoes the FP32 IR when the checkpoint changed; the INT8 IR quantized from the old one is stale."""
    import json

    from ssh_toolkit.evaluation import load_irs
    from ssh_toolkit.workspace import Checkpoint

    ws = Workspace(tmp_path)
    int8, fp32 = ws.ir_dir("toy", SIZE, "INT8"), ws.ir_dir("toy", SIZE, "FP32")
    fp32_record = {k: v for k, v in _record().items() if k in ConvertedModel.__dataclass_fields__}
    for d, rec in ((int8, {**_record(), "source": {"sha256": {"xml": "c" * 64, "bin": "d" * 64}}}),
                   (fp32, {**fp32_record, "precision": "FP32", "sha256": {"xml": "c" * 64, "bin": "d" * 64}})):
        d.mkdir(parents=True)
        (d / "conversion.json").write_text(json.dumps(rec))
    ck = Checkpoint(ws.checkpoint_dir("toy"), "sshb", 0, "toy", "0" * 64)
    assert [ir.model_name for ir in load_irs(card, ck, ws, SIZE)] == ["ir-fp32", "ir-int8"]
    (fp32 / "conversion.json").write_text(json.dumps({**fp32_record, "precision": "FP32",
                                                      "sha256": {"xml": "e" * 64, "bin": "f" * 64}}))
    capsys.readouterr()
    assert [ir.model_name for ir in load_irs(card, ck, ws, SIZE)] == ["ir-fp32"]
    assert capsys.readouterr().err == (f"warning: {int8}: quantized from another FP32 IR than the one in {fp32} "
                                       f"(converted again since); ir-int8 left out: run 'ssh-toolkit quantize "
                                       f"--weights toy --input-size {SIZE}'\n")


@pytest.mark.slow
def test_merge_says_int8_parity_is_reported_not_gated_as_evaluate_does(int8_ws, card, tmp_path, monkeypatch):
    from ssh_toolkit.evaluation import evaluate, load_irs

    ws, ck, _ = int8_ws
    monkeypatch.chdir(tmp_path)
    for k in (1, 2):
        evaluate(card, ck, load_irs(card, ck, ws, SIZE), ws.sample_data, ws, input_size=SIZE, shard=(k, 2),
                 run_dir=tmp_path / f"s{k}", progress=False, exec_precisions=("f32",))
    r = cli("merge", tmp_path / "s1", tmp_path / "s2", "--out", tmp_path / "merged")
    assert r.exit_code == 0, r.output
    assert "parity[ir-int8]: reported, not gated (max |diff| " in r.output
    assert "parity[ir-fp32]: PASS; box match rate" in r.output
    # The merged run reports how the INT8 IR was made (and the same-folder note) as one run over the union does.
    evaluate(card, ck, load_irs(card, ck, ws, SIZE), ws.sample_data, ws, input_size=SIZE, run_dir=tmp_path / "whole",
             progress=False, exec_precisions=("f32",))
    for name in ("quantization.csv", "quantization.json"):
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert f"| ir-int8 | {ws.sample_data} | 14 | yes |" in (tmp_path / "merged" / "report.md").read_text()
    assert SAME_FOLDER_NOTE in (tmp_path / "merged" / "report.md").read_text()


def test_validation_images_without_a_counted_face_are_an_input_error_before_any_work(sample_root, tmp_path, card):
    """Without a face the protocol counts, every model scores 0 % and the drop limit would hold vacuously."""
    from ssh_toolkit.quantize import validation_images

    assert len(validation_images(sample_root, 3, card).images) == 3
    root = tmp_path / "no-faces"
    shutil.copytree(sample_root, root)
    gt = root / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    names = [line for line in gt.read_text().splitlines() if line.endswith(".jpg")]
    gt.write_text("".join(f"{n}\n0\n0 0 0 0 0 0 0 0 0 0\n" for n in names))
    with pytest.raises(InputDataError) as e:
        validation_images(root, 0, card)
    assert str(e.value).startswith(f"{gt}: the 14 validation images hold no face that {card.protocol.name} counts")


def test_an_int8_ir_that_cannot_be_written_is_exit_3_naming_the_folder(tmp_path, monkeypatch):
    """A full disk: OpenVINO's save_model raises 'basic_ios::clear: iostream error' (seen with a full tmpfs)."""
    import openvino as ov

    from ssh_toolkit.errors import EnvironmentProblem
    from ssh_toolkit.quantize import save_ir

    p = ov.opset13.parameter([1, 3], np.float32, name="x")
    model = ov.Model([ov.opset13.relu(p)], [p])
    save_ir(model, tmp_path / "ok.xml", tmp_path)
    assert (tmp_path / "ok.bin").is_file()

    def full(*args, **kwargs):
        raise RuntimeError("basic_ios::clear:\n iostream error")

    monkeypatch.setattr(ov, "save_model", full)
    with pytest.raises(EnvironmentProblem) as e:
        save_ir(model, tmp_path / "full.xml", tmp_path / "INT8")
    assert e.value.exit_code == 3
    assert str(e.value).startswith(f"{tmp_path / 'INT8'}: OpenVINO could not write the INT8 IR (basic_ios::clear: "
                                   f"iostream error; ") and str(e.value).endswith(" MB free on its disk)")


@pytest.mark.slow  # the shared quantized workspace
def test_nncf_failing_on_a_full_temporary_disk_is_exit_3_and_keeps_the_int8_ir(int8_ws, card, monkeypatch):
    """NNCF saves its fully quantized model into a temporary folder; on a full disk OpenVINO raises a bare
    'basic_ios::clear: iostream error' (seen with TMPDIR on a full tmpfs)."""
    import nncf

    from ssh_toolkit.errors import EnvironmentProblem

    ws, ck, q = int8_ws

    def full(*args, **kwargs):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", full)
    with pytest.raises(EnvironmentProblem) as e:
        quantize(card, ck, ws, ws.sample_data, input_size=SIZE, force=True, progress=False, say=lambda m: None)
    assert e.value.exit_code == 3
    assert str(e.value).startswith("quantize: NNCF failed (basic_ios::clear: iostream error); its temporary folder ")
    assert QuantizedModel.load(q.directory) == q  # the INT8 IR of before is untouched
    q.check_files()


def test_asking_for_ir_int8_without_an_int8_ir_names_the_quantize_command(tmp_path, card):
    from ssh_toolkit.errors import UsageError
    from ssh_toolkit.inference import model_set
    from ssh_toolkit.workspace import Checkpoint

    ck = Checkpoint(tmp_path, "sshb", 0, "toy", "0" * 64)
    for f in (ck.params_path, ck.symbol_path):
        f.write_bytes(b"stand-in bytes: only hashed here")
    for name in ("ir-int8", "ir-int8@bf16"):
        with pytest.raises(UsageError) as e:
            model_set(card, ck, [], SIZE, [name])
        assert str(e.value) == (f"--model {name}: not quantized at input size {SIZE}; run 'ssh-toolkit quantize "
                                f"--weights toy --input-size {SIZE}' first")
