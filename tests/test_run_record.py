"""The run record: summary.json format 2, format-1 summaries upgraded on load, model order from the precisions."""

from __future__ import annotations

import dataclasses
import json

import pytest
from gate.records import make_summary

from ssh_toolkit.errors import InputDataError
from ssh_toolkit.metric.box_match import BoxMatch
from ssh_toolkit.run_record import SUMMARY_FORMAT, OutputParity, RunSummary, order_models


def _format1(summary: RunSummary) -> dict:
    """``summary`` as an ssh-toolkit of summary format 1 wrote it (no format key, older vocabulary)."""
    d = summary.to_json()
    del d["format"]
    d["weights"] = "stand-in"
    d["detection_parity"] = {m: {("match_rate" if k == "box_match_rate" else k): v for k, v in b.items()}
                             for m, b in d.pop("box_match").items()}
    for outs in d["parity"].values():
        for o in outs.values():
            o["problem"] = o.pop("reason")
            del o["rtol"]
    return d


def test_summary_round_trip_records_format_2_vocabulary(tmp_path):
    s = make_summary()
    data = json.loads(s.save(tmp_path / "run").read_text())
    assert data["format"] == SUMMARY_FORMAT == 2 and data["weights"] == "standin"
    assert data["box_match"]["ir-fp16"]["box_match_rate"] == 0.98 and "detection_parity" not in data
    assert set(data["parity"]["ir-fp32"]["rpn_bbox_pred_stride8"]) == {
        "max_abs", "min_passing_atol", "atol", "cosine", "min_cosine", "passed", "reason", "rtol"}
    back = RunSummary.load(tmp_path / "run")
    assert back == dataclasses.replace(s, protocol_params=json.loads(json.dumps(s.protocol_params)))


def test_format_1_summary_is_upgraded_on_load(tmp_path):
    s = make_summary()
    d = _format1(s)
    out = d["parity"]["ir-fp16"]
    out["rpn_bbox_pred_stride8"].update(passed=False, problem="")  # a failed tolerance: no reason recorded then
    out["rpn_cls_prob_reshape_stride8"].update(passed=False, problem="shape mismatch: reference (1,) vs test (2,)")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps(d))
    old = RunSummary.load(tmp_path / "run")
    assert old.format == 2 and old.weights == "standin"
    assert old.box_match == s.box_match and isinstance(old.box_match["ir-fp32"], BoxMatch)
    p = old.parity["ir-fp16"]
    assert p["rpn_bbox_pred_stride8"].reason == "failed (reason not recorded by this format-1 summary)"
    assert p["rpn_cls_prob_reshape_stride8"].reason == "shape mismatch: reference (1,) vs test (2,)"
    assert p["rpn_bbox_pred_stride16"] == OutputParity(1.6e-2, 1.6e-2, 0.05, 0.99998, 0.9999, True, "", None)


def test_newer_summary_format_is_a_one_line_input_error(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**make_summary().to_json(), "format": 3}))
    with pytest.raises(InputDataError, match=r"summary.json: not a valid run summary \(format 3 is newer than this "
                                             r"ssh-toolkit reads \(2\)\)$") as e:
        RunSummary.load(tmp_path / "run")
    assert e.value.exit_code == 2


def test_models_are_ordered_by_the_recorded_precisions_not_a_fixed_list():
    assert order_models(["x", "ir-fp16", "mxnet", "ir-fp32", "ir-fp16"], ["FP32", "FP16"]) == [
        "mxnet", "ir-fp32", "ir-fp16", "x"]
    assert order_models(["ir-fp32", "ir-int8", "mxnet"], ["INT8", "FP32"]) == ["mxnet", "ir-int8", "ir-fp32"]
    s = make_summary(precisions={"mxnet": "FP32", "ir-fp16": "FP16", "ir-fp32": "FP32"})
    assert s.ir_precisions == ("FP16", "FP32")
    assert s.ordered_models(s.map) == ["mxnet", "ir-fp16", "ir-fp32"]
