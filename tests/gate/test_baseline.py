"""The baseline file: made from a run, saved, loaded and validated, comparability, and recording it."""

from __future__ import annotations

import dataclasses
import json

import pytest
from gate.records import PROTOCOL, _det, make_summary

from ssh_toolkit.errors import GateFailure, InputDataError
from ssh_toolkit.gate import Baseline, check_comparable, check_gate, write_baseline
from ssh_toolkit.pipeline import default_baseline


@pytest.mark.parametrize("change, message", [
    (dict(input_size=320), "input_size 640 vs 320"),
    (dict(checkpoint_kind="standin"), "checkpoint_kind toy vs standin"),
    (dict(protocol_params={**PROTOCOL, "nms_threshold": 0.4}), "protocol_params.nms_threshold 0.3 vs 0.4"),
    (dict(dataset={"split": "val", "n_images": 50, "identifiers_sha256": "ef" * 32}),
     "dataset.identifiers_sha256 ababababab"),
    (dict(n_images=20, dataset={"split": "val", "n_images": 20, "identifiers_sha256": "ab" * 32}),
     "n_images 50 vs 20; dataset.n_images 50 vs 20"),
    (dict(dataset={"split": "val", "n_images": 50, "identifiers_sha256": "ab" * 32,
                   "annotations_sha256": "12" * 32}), "dataset.annotations_sha256 None vs 1212"),
])
def test_incomparable_baseline_is_an_input_error(card, change, message):
    base = Baseline.from_run(make_summary())
    with pytest.raises(InputDataError, match="not comparable") as e:
        check_gate(make_summary(**change), base, card, "reports/baselines/ssh-mxnet.json")
    msg = str(e.value)
    assert message in msg and "\n" not in msg and e.value.exit_code == 2
    assert msg.startswith("baseline reports/baselines/ssh-mxnet.json (from run 20251125-120000-toy) and run")


def test_baseline_round_trip_and_format(tmp_path):
    s = make_summary()
    b = Baseline.from_run(s)
    path = b.save(tmp_path / "baselines" / "ssh-mxnet.json")
    data = json.loads(path.read_text())
    assert list(data)[:11] == ["format", "created", "from_run", "model", "weights", "checkpoint_kind",
                               "input_size", "protocol", "protocol_params", "dataset", "n_images"]
    assert data["from_run"] == s.run_id and "root" not in data["dataset"]
    assert data["map"] == {"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp16": 71.18}
    assert data["parity"]["ir-fp16"]["rpn_bbox_pred_stride8"] == {"max_abs": 0.016, "min_passing_atol": 0.016,
                                                                  "cosine": 0.99998}
    assert data["box_match"]["ir-fp16"] == {"box_match_rate": 0.98, "matched": 392, "n_ref": 400}
    assert data["format"] == 2 and data["weights"] == "standin"
    assert Baseline.load(path) == dataclasses.replace(b, protocol_params=json.loads(json.dumps(b.protocol_params)))
    assert not list(path.parent.glob(".*tmp"))


def test_baseline_load_errors_are_one_line(tmp_path):
    with pytest.raises(InputDataError, match="baseline not found; record one with"):
        Baseline.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"created": "x",\n "map": ')
    with pytest.raises(InputDataError, match=r"not JSON \(line 2"):
        Baseline.load(bad)
    bad.write_text(json.dumps({"created": "x", "from_run": "r"}))
    with pytest.raises(InputDataError, match="missing key.s. model, weights, checkpoint_kind, input_size"):
        Baseline.load(bad)
    data = Baseline.from_run(make_summary()).to_json()
    bad.write_text(json.dumps({**data, "map": {"mxnet": "high"}}))
    with pytest.raises(InputDataError, match="key 'map.mxnet'"):
        Baseline.load(bad)
    with pytest.raises(InputDataError, match="is a folder"):
        Baseline.load(tmp_path)


def test_write_baseline_refuses_a_run_whose_own_checks_failed(card, tmp_path):
    bad = make_summary(box_match={"ir-fp32": _det(400, 300), "ir-fp16": _det(400, 392)})
    result = check_gate(bad, None, card)
    path = tmp_path / "b.json"
    with pytest.raises(GateFailure, match=r"refusing to record a baseline from run 20251125-120000-toy: 1 of its "
                                          r"in-run checks failed \(box_match_rate\[ir-fp32\]\)"):
        write_baseline(bad, result, path)
    assert not path.exists()
    # A regression against the old baseline does not block recording the new one.
    good = make_summary()
    result = check_gate(good, Baseline.from_run(make_summary(map={**good.map, "mxnet": 75.0})), card)
    assert not result and not result.failed_in_run
    assert Baseline.load(write_baseline(good, result, path)).map == good.map


def test_format_1_baseline_is_upgraded_on_load(tmp_path):
    data = Baseline.from_run(make_summary()).to_json()
    data.update(format=1, weights="stand-in")
    data["detection_parity"] = {ir: {"match_rate": d["box_match_rate"], "matched": d["matched"], "n_ref": d["n_ref"]}
                                for ir, d in data.pop("box_match").items()}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    b = Baseline.load(path)
    assert b.format == 2 and b.weights == "standin"
    assert b.box_match["ir-fp16"] == {"box_match_rate": 0.98, "matched": 392, "n_ref": 400}
    check_comparable(make_summary(), b)  # a format-2 run of the same setup compares with it


def test_committed_baseline_loads_and_compares_with_a_run_of_its_setup(card):
    b = Baseline.load(default_baseline(card, "toy", 640))
    assert b.weights == "standin" and b.checkpoint_kind == "toy" and b.input_size == 640
    # recorded on a bf16 CPU: the deploy-default models are in it too, and it says where it ran
    assert set(b.box_match) == {"ir-fp32", "ir-fp16", "ir-fp32@bf16", "ir-fp16@bf16", "ir-int8", "ir-int8@bf16"}
    assert all("box_match_rate" in d for d in b.box_match.values())
    assert b.runtime["default_exec_precision"] == "bf16" and b.versions["openvino"].startswith("2026.4")
    run = make_summary(n_images=b.n_images, protocol_params=b.protocol_params, dataset={**b.dataset, "root": "/x"},
                       map=b.map, box_match={})
    check_comparable(run, b)


def test_saving_never_overwrites_a_file_that_is_not_a_baseline(tmp_path):
    """Review finding 2: gate --update-baseline --baseline /tmp/precious.txt overwrote any existing file."""
    from ssh_toolkit.errors import UsageError

    b = Baseline.from_run(make_summary())
    precious = tmp_path / "precious.txt"
    precious.write_text("my notes\n")
    with pytest.raises(UsageError) as info:
        b.save(precious)
    assert str(info.value) == (f"{precious}: exists and is not a baseline ssh-toolkit can read (not a valid "
                               f"baseline: not JSON (line 1: Expecting value)); not overwritten: choose another "
                               f"--baseline file or move it away")
    assert precious.read_text() == "my notes\n"
    other = tmp_path / "other.json"
    other.write_text('{"map": {"mxnet": 1}}')  # JSON, but not a baseline
    with pytest.raises(UsageError, match="is not a baseline ssh-toolkit can read .not a valid baseline: missing key"):
        b.save(other)
    assert other.read_text() == '{"map": {"mxnet": 1}}'
    with pytest.raises(UsageError, match="is a folder; --baseline expects a baseline JSON file"):
        b.save(tmp_path)
    path = b.save(tmp_path / "b.json")  # absent: written; a valid baseline: replaced
    newer = Baseline.from_run(make_summary(run_id="r2"))
    newer.save(path)
    assert Baseline.load(path).source_run == "r2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json", "other.json", "precious.txt"]


def test_a_baseline_with_a_utf8_bom_loads(tmp_path):
    """Review finding 19: a UTF-8 byte order mark (some Windows editors write one) made a baseline 'not JSON'."""
    path = Baseline.from_run(make_summary()).save(tmp_path / "b.json")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert Baseline.load(path).map == {"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp16": 71.18}


@pytest.mark.parametrize("change, key, what", [
    (lambda d: d["map"].update(mxnet=float("nan")), "map.mxnet", "expected a finite mAP in percent, got nan"),
    (lambda d: d["map"].update({"ir-fp32": float("inf")}), "map.ir-fp32", "expected a finite mAP in percent, got inf"),
    (lambda d: d["map"].update(mxnet=True), "map.mxnet", "expected a finite mAP in percent, got True"),
    (lambda d: d.update(map={}), "map", "empty; a baseline holds the mAP of at least one model"),
    (lambda d: d.update(map=[71.2]), "map", "expected model name -> mAP in percent, got a list"),
    (lambda d: d["box_match"]["ir-fp32"].update(box_match_rate=float("nan")), "box_match.ir-fp32.box_match_rate",
     "expected a finite number, got nan"),
    (lambda d: d["box_match"].update({"ir-fp32": 0.99}), "box_match.ir-fp32", "expected a JSON object, got 0.99"),
    (lambda d: d["parity"].update({"ir-fp32": []}), "parity.ir-fp32", "expected a JSON object, got []"),
    (lambda d: d["parity"]["ir-fp16"]["rpn_bbox_pred_stride8"].update(min_passing_atol="x"),
     "parity.ir-fp16.rpn_bbox_pred_stride8.min_passing_atol", "expected a number, got 'x'"),
    (lambda d: d.update(n_images=-1), "n_images", "expected a count (an integer >= 0), got -1"),
    (lambda d: d.update(n_images="50"), "n_images", "expected a count (an integer >= 0), got '50'"),
])
def test_a_baseline_with_nan_or_empty_or_wrongly_typed_figures_is_not_valid(card, tmp_path, change, key, what):
    data = Baseline.from_run(make_summary()).to_json()
    change(data)
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))  # json writes NaN/Infinity, and Python's json reads them back
    with pytest.raises(InputDataError) as e:
        Baseline.load(path)
    assert str(e.value) == f"{path}: not a valid baseline: key '{key}': {what}"
    assert e.value.exit_code == 2


def test_the_gate_refuses_a_nan_baseline_instead_of_passing_it(tmp_path, card):
    from typer.testing import CliRunner

    from ssh_toolkit.cli import app

    run = tmp_path / "run"
    make_summary().save(run)
    for bad_map in ({"mxnet": float("nan"), "ir-fp32": 71.231, "ir-fp16": 71.18}, {}):
        data = {**Baseline.from_run(make_summary()).to_json(), "map": bad_map}
        path = tmp_path / "b.json"
        path.write_text(json.dumps(data))
        r = CliRunner().invoke(app, ["gate", str(run), "--baseline", str(path)])
        assert r.exit_code == 2, r.output
        assert r.output.startswith(f"ssh-toolkit: error: {path}: not a valid baseline: key 'map") and \
            r.output.count("\n") == 1, r.output
