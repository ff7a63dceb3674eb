"""The regression gate on hand-made run records: every rule passing and failing, with the exact numbers."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ssh_toolkit.errors import GateFailure, InputDataError
from ssh_toolkit.gate.rules import Baseline, check_gate, gate_run, write_baseline, write_step_summary
from ssh_toolkit.report.markdown import standin_banner
from ssh_toolkit.run_record import DetectionParity, OutputParity, RunSummary

OUTPUTS = ("rpn_cls_prob_reshape_stride32", "rpn_bbox_pred_stride32", "rpn_cls_prob_reshape_stride16",
           "rpn_bbox_pred_stride16", "rpn_cls_prob_reshape_stride8", "rpn_bbox_pred_stride8")
PROTOCOL = {"name": "omz-ac-retinaface-wider", "keep_top_k": 1000, "nms_threshold": 0.3,
            "include_boundaries": True, "round_policy": "nearest", "clip_annotation": 1024.0,
            "height_range": (64.0, 1024.0), "filter_empty": True, "overlap_threshold": 0.5,
            "ignore_difficult": True}


def _parity(precision: str, **override) -> dict[str, OutputParity]:
    out = {}
    for name in OUTPUTS:
        if precision == "FP32":
            p = OutputParity(max_abs=3.1e-6, min_passing_atol=3.1e-6, atol=1e-3, cosine=0.9999999998,
                             min_cosine=0.99999, passed=True)
        elif "cls" in name:
            p = OutputParity(max_abs=2.4e-3, min_passing_atol=2.4e-3, atol=0.1, cosine=0.99999, min_cosine=0.999,
                             passed=True)
        else:
            p = OutputParity(max_abs=1.6e-2, min_passing_atol=1.6e-2, atol=0.5, cosine=0.99998,
                             min_cosine=0.999, passed=True)
        out[name] = dataclasses.replace(p, **override.get(name, {}))
    return out


def _det(n_ref: int, matched: int) -> DetectionParity:
    return DetectionParity(n_ref=n_ref, n_test=n_ref + 1, matched=matched, match_rate=matched / n_ref,
                           only_ref=n_ref - matched, only_test=n_ref + 1 - matched, mean_abs_score_diff=2e-4,
                           max_abs_score_diff=3e-3, min_score=0.5, iou=0.9)


def make_summary(**kw) -> RunSummary:
    """A stand-in (toy) run of 50 images at 640 with MXNet and both IRs, everything passing."""
    base = dict(
        run_id="20251125-120000-toy", model="ssh-mxnet",
        map={"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp16": 71.180}, n_images=50, input_size=640,
        protocol="omz-ac-retinaface-wider", protocol_params=PROTOCOL, weights="stand-in", checkpoint_kind="toy",
        note=standin_banner("stand-in", "toy"), reference_map=84.8,
        dataset={"root": "/data/wider-sample", "split": "val", "n_images": 50, "identifiers_sha256": "ab" * 32,
                 "skipped": 0},
        precisions={"mxnet": "FP32", "ir-fp32": "FP32", "ir-fp16": "FP16"},
        parity={"ir-fp32": _parity("FP32"), "ir-fp16": _parity("FP16")},
        detection_parity={"ir-fp32": _det(400, 400), "ir-fp16": _det(400, 392)},
        card_sha256="cd" * 32, versions={"python": "3.11.7", "openvino": "2023.3.0"},
        created="2025-11-25T12:00:00+00:00",
    )
    base.update(kw)
    return RunSummary(**base)


def _line(result, name: str) -> str:
    found = [ln for ln in result.lines() if ln.split(" | ")[1] == name]
    assert len(found) == 1, (name, result.lines())
    return found[0]


def test_identical_run_passes_every_rule_and_skips_the_reference_with_standin(card):
    s = make_summary()
    r = check_gate(s, Baseline.from_run(s), card, "base.json")
    assert r and not r.failed
    rules = [c.rule for c in r.checks]
    assert rules.count("map_vs_baseline") == 3 and rules.count("box_match_rate") == 2
    assert rules.count("parity_atol") == rules.count("parity_cosine") == 12
    ref = [c for c in r.checks if c.rule == "map_vs_reference"]
    assert len(ref) == 3 and all(c.passed is None and c.status == "SKIP" for c in ref)
    assert _line(r, "map_vs_reference[mxnet]") == (
        "SKIP | map_vs_reference[mxnet] | mAP 71.234: stand-in weights: not compared with the published 84.80 %")
    assert _line(r, "map_vs_baseline[ir-fp16]") == (
        "PASS | map_vs_baseline[ir-fp16] | mAP 71.180 vs baseline 71.180: +0.000 points (may drop at most 0.050)")
    assert r.verdict() == "gate PASS: 31 checks passed, 3 skipped; stand-in weights"
    r.raise_for_failure()  # no exception


def test_map_drop_beyond_tolerance_fails_with_the_amount(card):
    base = Baseline.from_run(make_summary(map={"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp16": 71.300}))
    r = check_gate(make_summary(), base, card)
    assert not r and [c.name for c in r.failed] == ["map_vs_baseline[ir-fp16]"]
    assert _line(r, "map_vs_baseline[ir-fp16]") == (
        "FAIL | map_vs_baseline[ir-fp16] | mAP 71.180 vs baseline 71.300: dropped 0.120 points, 0.070 more than "
        "the 0.050 allowed")
    c = r.failed[0]
    assert c.value == 71.18 and c.baseline == 71.3 and c.limit == pytest.approx(71.25) and c.op == ">="
    with pytest.raises(GateFailure, match=r"1 of 34 checks failed \(map_vs_baseline\[ir-fp16\]\)") as e:
        r.raise_for_failure()
    assert e.value.exit_code == 1


def test_small_drop_passes_and_improvement_passes_with_a_note(card):
    base = Baseline.from_run(make_summary(map={"mxnet": 71.274, "ir-fp32": 70.931, "ir-fp16": 71.180}))
    r = check_gate(make_summary(), base, card)
    assert r
    assert _line(r, "map_vs_baseline[mxnet]") == (
        "PASS | map_vs_baseline[mxnet] | mAP 71.234 vs baseline 71.274: -0.040 points (may drop at most 0.050)")
    assert _line(r, "map_vs_baseline[ir-fp32]") == (
        "PASS | map_vs_baseline[ir-fp32] | mAP 71.231 vs baseline 70.931: improved by 0.300 points (more than the "
        "0.050 tolerance; record it with --update-baseline)")


def test_model_in_baseline_missing_from_run_fails(card):
    base = Baseline.from_run(make_summary())
    run = make_summary(map={"mxnet": 71.234, "ir-fp32": 71.231}, precisions={"mxnet": "FP32", "ir-fp32": "FP32"},
                       parity={"ir-fp32": _parity("FP32")}, detection_parity={"ir-fp32": _det(400, 400)})
    r = check_gate(run, base, card)
    assert [c.name for c in r.failed] == ["map_vs_baseline[ir-fp16]"]
    assert _line(r, "map_vs_baseline[ir-fp16]") == (
        "FAIL | map_vs_baseline[ir-fp16] | in the baseline (mAP 71.180) but missing from the run")


def test_new_model_not_in_baseline_is_skipped(card):
    old = make_summary(map={"mxnet": 71.234, "ir-fp32": 71.231})
    r = check_gate(make_summary(), Baseline.from_run(old), card)
    assert r and _line(r, "map_vs_baseline[ir-fp16]").startswith("SKIP | map_vs_baseline[ir-fp16] | mAP 71.180: "
                                                                   "not in the baseline")


def test_no_baseline_skips_the_baseline_rule(card):
    r = check_gate(make_summary(), None, card)
    assert r and _line(r, "map_vs_baseline") == "SKIP | map_vs_baseline | no baseline given: mAP not compared"


def test_real_weights_are_held_against_the_published_map(card):
    full = {"root": "/data/WIDER", "split": "val", "n_images": 3226, "identifiers_sha256": "ef" * 32, "skipped": 0}
    real = dict(weights="real", checkpoint_kind="real", note=standin_banner("real", "real"), n_images=3226,
                dataset=full)
    good = make_summary(map={"mxnet": 84.75, "ir-fp32": 84.745, "ir-fp16": 84.70}, **real)
    r = check_gate(good, None, card)
    assert r
    assert _line(r, "map_vs_reference[mxnet]") == (
        "PASS | map_vs_reference[mxnet] | mAP 84.750 vs published 84.800: -0.050 points (within 0.100)")
    bad = make_summary(map={"mxnet": 84.50, "ir-fp32": 84.50, "ir-fp16": 84.45}, **real)
    r = check_gate(bad, None, card)
    assert [c.name for c in r.failed] == ["map_vs_reference[mxnet]", "map_vs_reference[ir-fp32]",
                                          "map_vs_reference[ir-fp16]"]
    assert _line(r, "map_vs_reference[mxnet]") == (
        "FAIL | map_vs_reference[mxnet] | mAP 84.500 vs published 84.800: off by -0.300 points, 0.200 more than "
        "the 0.100 allowed")
    assert r.failed[0].limit_text == "84.800 ± 0.100"
    assert "stand-in" not in r.verdict()


def test_reference_rule_skipped_at_another_input_size(card):
    full = {"root": "/data/WIDER", "split": "val", "n_images": 3226, "identifiers_sha256": "ef" * 32, "skipped": 0}
    real = make_summary(weights="real", checkpoint_kind="real", n_images=3226, dataset=full, input_size=320,
                        map={"mxnet": 80.0, "ir-fp32": 80.0, "ir-fp16": 79.95})
    r = check_gate(real, None, card)
    assert r and _line(r, "map_vs_reference[mxnet]") == (
        "SKIP | map_vs_reference[mxnet] | mAP 80.000: evaluated at 320x320, the published figure is at 640x640: "
        "not compared with the published 84.80 %")


def test_reference_rule_skipped_on_a_subset_of_the_reference_dataset(card):
    assert card.reference_n_images == 3226
    real = make_summary(weights="real", checkpoint_kind="real", map={"mxnet": 80.0, "ir-fp32": 80.0,
                                                                      "ir-fp16": 79.95})
    r = check_gate(real, None, card)
    assert r and _line(r, "map_vs_reference[mxnet]") == (
        "SKIP | map_vs_reference[mxnet] | mAP 80.000: evaluated 50 of the 3226 images of WIDER FACE val: not "
        "compared with the published 84.80 %")


def test_ir_vs_mxnet_drop_per_precision(card):
    # FP32 may lose 0.010 points, FP16 0.100; a drop of exactly the limit passes despite float noise.
    r = check_gate(make_summary(map={"mxnet": 71.234, "ir-fp32": 71.214, "ir-fp16": 71.134}), None, card)
    assert [c.name for c in r.failed] == ["ir_vs_mxnet_drop[ir-fp32]"]
    assert _line(r, "ir_vs_mxnet_drop[ir-fp32]") == (
        "FAIL | ir_vs_mxnet_drop[ir-fp32] | mAP 71.214 vs mxnet 71.234: drop 0.020 points exceeds the 0.010 "
        "allowed for FP32 by 0.010")
    assert _line(r, "ir_vs_mxnet_drop[ir-fp16]") == (
        "PASS | ir_vs_mxnet_drop[ir-fp16] | mAP 71.134 vs mxnet 71.234: drop 0.100 <= 0.100 allowed for FP16")
    assert r.failed[0].in_run


def test_parity_rechecked_against_the_cards_current_tolerances(card):
    # The run stored a looser atol (0.1) and passed; the card now allows 0.05 for FP16 deltas.
    assert card.tolerance("FP16", "rpn_bbox_pred_stride8").atol == 0.05
    loose = _parity("FP16", rpn_bbox_pred_stride8={"max_abs": 0.062, "min_passing_atol": 0.062, "atol": 0.1})
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": loose}), None, card)
    assert [c.name for c in r.failed] == ["parity_atol[ir-fp16/rpn_bbox_pred_stride8]"]
    assert _line(r, "parity_atol[ir-fp16/rpn_bbox_pred_stride8]") == (
        "FAIL | parity_atol[ir-fp16/rpn_bbox_pred_stride8] | needs atol 6.200e-02 > 5.0e-02 (FP16), exceeds it by "
        "1.200e-02 (max_abs 6.200e-02)")
    assert _line(r, "parity_atol[ir-fp32/rpn_bbox_pred_stride8]") == (
        "PASS | parity_atol[ir-fp32/rpn_bbox_pred_stride8] | needs atol 3.100e-06 <= 1.0e-03 (FP32) "
        "(max_abs 3.100e-06)")


def test_parity_cosine_and_problem_flag(card):
    fp32 = _parity("FP32", rpn_cls_prob_reshape_stride16={"cosine": 0.99990},
                   rpn_bbox_pred_stride32={"passed": False})  # numbers fine, but a NaN/shape problem was recorded
    r = check_gate(make_summary(parity={"ir-fp32": fp32, "ir-fp16": _parity("FP16")}), None, card)
    assert [c.name for c in r.failed] == ["parity_atol[ir-fp32/rpn_bbox_pred_stride32]",
                                          "parity_cosine[ir-fp32/rpn_cls_prob_reshape_stride16]"]
    assert _line(r, "parity_cosine[ir-fp32/rpn_cls_prob_reshape_stride16]") == (
        "FAIL | parity_cosine[ir-fp32/rpn_cls_prob_reshape_stride16] | cosine 0.999900000 < 0.99999 (FP32), short "
        "by 9.000e-05")
    assert "the run marked this output failed" in _line(r, "parity_atol[ir-fp32/rpn_bbox_pred_stride32]")


def test_missing_parity_output_or_ir_fails(card):
    partial = {k: v for k, v in _parity("FP16").items() if k != "rpn_bbox_pred_stride16"}
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": partial}), None, card)
    assert [c.name for c in r.failed] == ["parity_atol[ir-fp16/rpn_bbox_pred_stride16]"]
    assert "missing from the run's parity" in r.failed[0].detail
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32")}, detection_parity={}), None, card)
    assert [c.name for c in r.failed] == ["parity_atol[ir-fp16/*]", "box_match_rate[ir-fp32]",
                                          "box_match_rate[ir-fp16]"]
    assert _line(r, "parity_atol[ir-fp16/*]") == (
        "FAIL | parity_atol[ir-fp16/*] | no numeric parity recorded for ir-fp16 in this run")


def test_box_match_rate_per_precision(card):
    r = check_gate(make_summary(detection_parity={"ir-fp32": _det(400, 396), "ir-fp16": _det(400, 340)}), None,
                   card)
    assert [c.name for c in r.failed] == ["box_match_rate[ir-fp16]"]
    assert _line(r, "box_match_rate[ir-fp32]") == (
        "PASS | box_match_rate[ir-fp32] | 396 of 400 MXNet detections (score >= 0.5) reproduced at IoU >= 0.9: "
        "rate 0.9900 >= 0.9900 (FP32)")
    assert _line(r, "box_match_rate[ir-fp16]") == (
        "FAIL | box_match_rate[ir-fp16] | 340 of 400 MXNet detections (score >= 0.5) reproduced at IoU >= 0.9: "
        "rate 0.8500 < 0.9000 (FP16), short by 0.0500")


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


def test_run_from_another_card_or_unknown_precision_is_an_input_error(card):
    with pytest.raises(InputDataError, match="made with the card 'other'"):
        check_gate(make_summary(model="other"), None, card)
    with pytest.raises(InputDataError, match="precision 'INT8'"):
        check_gate(make_summary(precisions={"mxnet": "FP32", "ir-fp32": "FP32", "ir-fp16": "INT8"}), None, card)


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
    assert data["detection_parity"]["ir-fp16"] == {"match_rate": 0.98, "matched": 392, "n_ref": 400}
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
    with pytest.raises(InputDataError, match="key 'map'"):
        Baseline.load(bad)
    with pytest.raises(InputDataError, match="is a folder"):
        Baseline.load(tmp_path)


def test_write_baseline_refuses_a_run_whose_own_checks_failed(card, tmp_path):
    bad = make_summary(detection_parity={"ir-fp32": _det(400, 300), "ir-fp16": _det(400, 392)})
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


def _run_dir(tmp_path, summary: RunSummary):
    d = tmp_path / "runs" / summary.run_id
    summary.save(d)
    return d


def test_gate_run_normal_and_update_mode(card, tmp_path):
    path = tmp_path / "baselines" / "ssh-mxnet.json"
    first = _run_dir(tmp_path, make_summary())
    with pytest.raises(InputDataError, match="baseline not found"):
        gate_run(first, path, card)
    r = gate_run(first, path, card, update_baseline=True)
    assert r and r.notes[-1] == f"baseline written: {path}" and path.is_file()
    worse = _run_dir(tmp_path, make_summary(run_id="r2", map={"mxnet": 71.0, "ir-fp32": 70.995, "ir-fp16": 70.95}))
    r = gate_run(worse, path, card)
    assert not r and [c.name for c in r.failed] == ["map_vs_baseline[mxnet]", "map_vs_baseline[ir-fp32]",
                                                    "map_vs_baseline[ir-fp16]"]
    assert r.baseline == str(path)
    broken = _run_dir(tmp_path, make_summary(run_id="r3", detection_parity={"ir-fp32": _det(400, 300),
                                                                            "ir-fp16": _det(400, 392)}))
    before = path.read_text()
    r = gate_run(broken, path, card, update_baseline=True)
    assert not r and path.read_text() == before
    assert r.notes[-1].startswith("baseline NOT written: 1 in-run check(s) failed")
    r = gate_run(worse, path, card, update_baseline=True)
    assert r and "mAP[mxnet]: 71.234 -> 71.000 (-0.234)" in r.notes
    assert Baseline.load(path).source_run == "r2"


def test_markdown_and_frame_list_every_rule(card):
    base = Baseline.from_run(make_summary(map={"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp16": 71.300}))
    r = check_gate(make_summary(), base, card, "b.json")
    md = r.markdown()
    assert md.startswith("### ssh-toolkit gate: FAIL")
    assert "> **STAND-IN WEIGHTS**" in md
    assert "| verdict | rule | value | limit | baseline | detail |" in md
    assert ("| **FAIL** | map_vs_baseline[ir-fp16] | 71.180 | >= 71.250 | 71.300 | mAP 71.180 vs baseline 71.300: "
            "dropped 0.120 points, 0.070 more than the 0.050 allowed |") in md
    assert "| SKIP | map_vs_reference[mxnet] | 71.234 | 84.800 ± 0.100 | 84.800 |" in md
    assert md.count("\n| ") == len(r.checks) + 1
    df = r.to_frame()
    assert len(df) == len(r.checks) and (df["verdict"] == "FAIL").sum() == 1
    assert set(df["rule"]) == {"map_vs_baseline", "map_vs_reference", "ir_vs_mxnet_drop", "parity_atol",
                               "parity_cosine", "box_match_rate"}


def test_step_summary_appended_only_when_set(monkeypatch, tmp_path):
    target = tmp_path / "summary.md"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert write_step_summary("# one") is None and not target.exists()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    target.write_text("earlier step\n")
    assert write_step_summary("# one") == target
    write_step_summary("# two\n")
    assert target.read_text() == "earlier step\n# one\n# two\n"
