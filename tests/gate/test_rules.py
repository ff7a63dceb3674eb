"""The gate's rules on hand-made run records: every rule passing and failing, with the exact numbers."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from gate.records import _det, _line, _parity, make_summary

from ssh_toolkit.errors import GateFailure, InputDataError
from ssh_toolkit.gate import Baseline, check_gate, gate_run
from ssh_toolkit.report.markdown import standin_banner
from ssh_toolkit.run_record import OutputParity, RunSummary


def test_identical_run_passes_every_rule_and_skips_the_reference_with_standin(card):
    s = make_summary()
    r = check_gate(s, Baseline.from_run(s), card, "base.json")
    assert r and not r.failed
    rules = [c.rule for c in r.checks]
    assert rules.count("map_vs_baseline") == 3 and rules.count("box_match_rate") == 2
    assert rules.count("parity") == 12
    ref = [c for c in r.checks if c.rule == "map_vs_reference"]
    assert len(ref) == 3 and all(c.passed is None and c.status == "SKIP" for c in ref)
    assert _line(r, "map_vs_reference[mxnet]") == (
        "SKIP | map_vs_reference[mxnet] | mAP 71.234: stand-in weights: not compared with the published 84.80 %")
    assert _line(r, "map_vs_baseline[ir-fp16]") == (
        "PASS | map_vs_baseline[ir-fp16] | mAP 71.180 vs baseline 71.180: +0.000 points (may drop at most 0.050)")
    assert r.verdict() == "gate PASS: 19 checks passed, 3 skipped; stand-in weights"
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
    with pytest.raises(GateFailure, match=r"1 of 22 checks failed \(map_vs_baseline\[ir-fp16\]\)") as e:
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
                       parity={"ir-fp32": _parity("FP32")}, box_match={"ir-fp32": _det(400, 400)})
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
    real = dict(weights="real", checkpoint_kind="real", note=standin_banner("real", "real", 84.8), n_images=3226,
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


def test_parity_reads_the_verdict_and_reason_the_run_recorded(card):
    # The figures alone would pass (needs atol 1.6e-2 <= 0.05): the gate does not re-judge them, it reports the
    # run's own verdict and reason.
    reason = "non-finite values (NaN or inf) in an output"
    fp16 = _parity("FP16", rpn_bbox_pred_stride8={"passed": False, "reason": reason})
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": fp16}), None, card)
    assert [c.name for c in r.failed] == ["parity[ir-fp16/rpn_bbox_pred_stride8]"]
    assert _line(r, "parity[ir-fp16/rpn_bbox_pred_stride8]") == (
        f"FAIL | parity[ir-fp16/rpn_bbox_pred_stride8] | {reason} (FP16)")
    assert r.failed[0].in_run and r.failed[0].value == 1.6e-2 and r.failed[0].limit == 0.05
    assert _line(r, "parity[ir-fp32/rpn_bbox_pred_stride8]") == (
        "PASS | parity[ir-fp32/rpn_bbox_pred_stride8] | needs atol 3.100e-06 <= 1.0e-03, cosine 1.000000000 >= "
        "0.99999 (FP32) (max_abs 3.100e-06)")
    # A recorded pass is a pass, a recorded failure a failure, whatever the figures say.
    cos = _parity("FP32", rpn_cls_prob_reshape_stride16={
        "cosine": 0.99990, "passed": False, "reason": "cosine 0.999900000 < 0.99999, short by 9.000e-05"})
    r = check_gate(make_summary(parity={"ir-fp32": cos, "ir-fp16": _parity("FP16")}), None, card)
    assert r.lines().count(
        "FAIL | parity[ir-fp32/rpn_cls_prob_reshape_stride16] | cosine 0.999900000 < 0.99999, short by 9.000e-05 "
        "(FP32)") == 1 and len(r.failed) == 1


def test_parity_judged_under_another_tolerance_than_the_cards_fails(card):
    # The run stored a looser atol (0.1) and passed; the card now allows 0.05 for FP16 deltas.
    assert card.tolerance("FP16", "rpn_bbox_pred_stride8").atol == 0.05
    loose = _parity("FP16", rpn_bbox_pred_stride8={"max_abs": 0.062, "min_passing_atol": 0.062, "atol": 0.1})
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": loose}), None, card)
    assert [c.name for c in r.failed] == ["parity[ir-fp16/rpn_bbox_pred_stride8]"]
    assert _line(r, "parity[ir-fp16/rpn_bbox_pred_stride8]") == (
        "FAIL | parity[ir-fp16/rpn_bbox_pred_stride8] | the run judged it PASS under atol 0.1, the card now says "
        "0.05 (FP16): re-score the run with this card ('ssh-toolkit evaluate' re-scores from its cache)")
    old = _parity("FP32", rpn_bbox_pred_stride8={"min_cosine": 0.999, "rtol": 0.01})
    r = check_gate(make_summary(parity={"ir-fp32": old, "ir-fp16": _parity("FP16")}), None, card)
    assert "under min_cosine 0.999, the card now says 0.99999; rtol 0.01, the card now says 0 (FP32)" in (
        _line(r, "parity[ir-fp32/rpn_bbox_pred_stride8]"))
    # A format-1 summary did not record rtol: not held against the card.
    assert check_gate(make_summary(parity={"ir-fp32": _parity("FP32", rpn_bbox_pred_stride8={"rtol": None}),
                                           "ir-fp16": _parity("FP16")}), None, card)


def test_missing_parity_output_or_ir_fails(card):
    partial = {k: v for k, v in _parity("FP16").items() if k != "rpn_bbox_pred_stride16"}
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": partial}), None, card)
    assert [c.name for c in r.failed] == ["parity[ir-fp16/rpn_bbox_pred_stride16]"]
    assert "missing from the run's parity" in r.failed[0].detail
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32")}, box_match={}), None, card)
    assert [c.name for c in r.failed] == ["parity[ir-fp16/*]", "box_match_rate[ir-fp32]",
                                          "box_match_rate[ir-fp16]"]
    assert _line(r, "parity[ir-fp16/*]") == (
        "FAIL | parity[ir-fp16/*] | no numeric parity recorded for ir-fp16 in this run")


def test_box_match_rate_per_precision(card):
    r = check_gate(make_summary(box_match={"ir-fp32": _det(400, 396), "ir-fp16": _det(400, 340)}), None,
                   card)
    assert [c.name for c in r.failed] == ["box_match_rate[ir-fp16]"]
    assert _line(r, "box_match_rate[ir-fp32]") == (
        "PASS | box_match_rate[ir-fp32] | 396 of 400 MXNet detections (score >= 0.5) reproduced at IoU >= 0.9: "
        "rate 0.9900 >= 0.9900 (FP32)")
    assert _line(r, "box_match_rate[ir-fp16]") == (
        "FAIL | box_match_rate[ir-fp16] | 340 of 400 MXNet detections (score >= 0.5) reproduced at IoU >= 0.9: "
        "rate 0.8500 < 0.9000 (FP16), short by 0.0500")


def test_run_from_another_card_or_unknown_precision_is_an_input_error(card):
    with pytest.raises(InputDataError, match="made with the card 'other'"):
        check_gate(make_summary(model="other"), None, card)
    with pytest.raises(InputDataError, match="precision 'INT4'"):
        check_gate(make_summary(precisions={"mxnet": "FP32", "ir-fp32": "FP32", "ir-fp16": "INT4"}), None, card)


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
    broken = _run_dir(tmp_path, make_summary(run_id="r3", box_match={"ir-fp32": _det(400, 300),
                                                                            "ir-fp16": _det(400, 392)}))
    before = path.read_text()
    r = gate_run(broken, path, card, update_baseline=True)
    assert not r and path.read_text() == before
    assert r.notes[-1].startswith("baseline NOT written: 1 in-run check(s) failed")
    r = gate_run(worse, path, card, update_baseline=True)
    assert r and "mAP[mxnet]: 71.234 -> 71.000 (-0.234)" in r.notes
    assert Baseline.load(path).source_run == "r2"


def _with_bf16(**kw):
    """A run on a bf16 CPU: the deploy default of each IR is its own model, with its own limits."""
    return make_summary(
        map={"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp32@bf16": 71.10, "ir-fp16": 71.180},
        precisions={"mxnet": "FP32", "ir-fp32": "FP32", "ir-fp32@bf16": "FP32@bf16", "ir-fp16": "FP16"},
        parity={"ir-fp32": _parity("FP32"), "ir-fp16": _parity("FP16"),
                "ir-fp32@bf16": _parity("FP16", **{o: {"atol": 0.1 if "cls" in o else 0.25, "min_cosine": 0.9995}
                                                   for o in ("rpn_cls_prob_reshape_stride32", "rpn_bbox_pred_stride32",
                                                             "rpn_cls_prob_reshape_stride16", "rpn_bbox_pred_stride16",
                                                             "rpn_cls_prob_reshape_stride8", "rpn_bbox_pred_stride8")})},
        box_match={"ir-fp32": _det(400, 400), "ir-fp16": _det(400, 392), "ir-fp32@bf16": _det(400, 300)},
        runtime={"device": "CPU", "cpu": "AMD EPYC", "default_exec_precision": "bf16"}, **kw)


def test_an_execution_variant_is_gated_with_its_own_card_limits(card):
    r = check_gate(_with_bf16(), Baseline.from_run(_with_bf16()), card)
    assert r, r.lines()
    assert _line(r, "ir_vs_mxnet_drop[ir-fp32@bf16]").endswith("drop 0.134 <= 0.500 allowed for FP32@bf16")
    assert "rate 0.7500 >= 0.7000 (FP32@bf16)" in _line(r, "box_match_rate[ir-fp32@bf16]")


def test_a_baseline_variant_missing_on_a_cpu_without_bf16_is_skipped_with_the_reason(card):
    """One committed baseline serves CPUs with and without bf16: the absent variant is a SKIP, never a FAIL."""
    run = make_summary(runtime={"device": "CPU", "cpu": "Intel Xeon E5", "default_exec_precision": "f32"})
    r = check_gate(run, Baseline.from_run(_with_bf16()), card)
    assert r, r.lines()
    assert _line(r, "map_vs_baseline[ir-fp32@bf16]") == (
        "SKIP | map_vs_baseline[ir-fp32@bf16] | in the baseline, not in this run: CPU Intel Xeon E5 runs IRs in f32 "
        "by default, not bf16 (another CPU than the baseline's); not compared")
    # ... while a base model missing is still a failure
    assert not check_gate(make_summary(map={"mxnet": 71.234, "ir-fp32": 71.231}), Baseline.from_run(_with_bf16()),
                          card)


def test_a_variant_new_to_the_baseline_is_skipped(card):
    r = check_gate(_with_bf16(), Baseline.from_run(make_summary()), card)
    assert r and _line(r, "map_vs_baseline[ir-fp32@bf16]").startswith(
        "SKIP | map_vs_baseline[ir-fp32@bf16] | mAP 71.100: not in the baseline")


def test_another_openvino_version_is_named_and_the_rules_still_apply(card):
    base = Baseline.from_run(make_summary())
    r = check_gate(make_summary(versions={"python": "3.11.7", "openvino": "2026.4.1"}), base, card)
    assert r.notes == ("note: this run used OpenVINO 2026.4.1, the baseline 2023.3.0; the rules apply all the same",)
    bad = make_summary(map={"mxnet": 60.0, "ir-fp32": 60.0, "ir-fp16": 60.0},
                       versions={"python": "3.11.7", "openvino": "2026.4.1"})
    assert not check_gate(bad, base, card)


def test_a_failing_parity_rule_names_the_localize_command_that_finds_the_layer(card):
    fp16 = _parity("FP16", rpn_bbox_pred_stride8={"passed": False, "reason": "needs atol 9e-02 > 5.0e-02"},
                   rpn_bbox_pred_stride16={"passed": False, "reason": "needs atol 8e-02 > 5.0e-02"})
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": fp16}), None, card)
    # One hint per failing IR (two failed outputs of ir-fp16), with the run's weights, size and dataset.
    assert r.hints == ("hint: to find the first layer where ir-fp16 parts from mxnet, run: ssh-toolkit localize "
                       "--model ir-fp16 --weights toy --input-size 640 --data-root /data/wider-sample --index 0",)
    assert check_gate(make_summary(), None, card).hints == ()
    # A card of the user's own is passed on; a root with a space is quoted for the shell.
    mine = dataclasses.replace(card, path=Path("/cards/my ssh.yaml"))
    s = make_summary(parity={"ir-fp32": _parity("FP32", rpn_bbox_pred_stride8={"passed": False}),
                             "ir-fp16": _parity("FP16")}, dataset={**make_summary().dataset, "root": "/my data"})
    assert check_gate(s, None, mine).hints[0].endswith(
        "--model ir-fp32 --weights toy --input-size 640 --data-root '/my data' --index 0 --pipeline "
        "'/cards/my ssh.yaml'")


def test_the_localize_hint_names_the_runs_workspace_and_the_card_absolutely(card, tmp_path, monkeypatch):
    """The hint is a command to paste: it names the workspace the run used (from its metadata.json; without it,
    localize looks in ./workspace and finds no checkpoint) and the user's card by its absolute path."""
    import json

    fp16 = _parity("FP16", rpn_bbox_pred_stride8={"passed": False, "reason": "needs atol 9e-02 > 5.0e-02"})
    run = _run_dir(tmp_path, make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": fp16}))
    (run / "metadata.json").write_text(json.dumps({"workspace": "/my ws/one"}))
    base = tmp_path / "base.json"
    gate_run(_run_dir(tmp_path, make_summary(run_id="ok")), base, card, update_baseline=True)
    hint = "--model ir-fp16 --weights toy --input-size 640 --data-root /data/wider-sample --index 0"
    assert gate_run(run, base, card).hints == (
        f"hint: to find the first layer where ir-fp16 parts from mxnet, run: ssh-toolkit localize {hint} "
        "--workspace '/my ws/one'",)
    # a run made with a relative --data-root: the absolute one recorded beside it is named
    (run / "metadata.json").write_text(json.dumps({"workspace": "/ws", "data_root": "/home/me/data/wider"}))
    assert gate_run(run, base, card).hints[0].endswith(
        "--input-size 640 --data-root /home/me/data/wider --index 0 --workspace /ws")
    (run / "metadata.json").write_text("{not json")  # a damaged metadata.json only loses the workspace
    assert gate_run(run, base, card).hints[0].endswith(f"{hint}")
    monkeypatch.chdir(tmp_path)
    mine = dataclasses.replace(card, path=Path("cards/my ssh.yaml"))
    r = check_gate(make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": fp16}), None, mine,
                   workspace=Path("ws"))
    assert r.hints[0].endswith(f"{hint} --workspace {tmp_path / 'ws'} --pipeline '{tmp_path}/cards/my ssh.yaml'")


def _with_int8(int8_map=70.5, matched=380, **parity_override):
    reported = {o: OutputParity(**{"max_abs": 0.2 + i / 10, "min_passing_atol": 0.2 + i / 10, "atol": None,
                                   "cosine": 0.97 - i / 100, "min_cosine": None, "passed": True,
                                   **parity_override.get(o, {})})
                for i, o in enumerate(card_outputs())}
    base = make_summary()
    return make_summary(map={**base.map, "ir-int8": int8_map}, precisions={**base.precisions, "ir-int8": "INT8"},
                        parity={**base.parity, "ir-int8": reported},
                        box_match={**base.box_match, "ir-int8": _det(400, matched)})


def card_outputs():
    from gate.records import OUTPUTS

    return OUTPUTS


def test_int8_is_gated_on_map_drop_and_box_match_rate_and_its_differences_are_only_reported(card):
    r = check_gate(_with_int8(), None, card)
    assert r, r.lines()
    assert _line(r, "ir_vs_mxnet_drop[ir-int8]") == (
        "PASS | ir_vs_mxnet_drop[ir-int8] | mAP 70.500 vs mxnet 71.234: drop 0.734 <= 1.000 allowed for INT8")
    assert _line(r, "parity[ir-int8/*]") == (
        "SKIP | parity[ir-int8/*] | max |diff| 7.000e-01, cosine >= 0.920000 over 6 outputs: reported, not gated "
        "(INT8 is gated on mAP drop and box match rate)")
    assert not [c for c in r.checks if c.name.startswith("parity[ir-int8/rpn")]  # no per-output tolerance verdicts
    bad = check_gate(_with_int8(int8_map=70.0, matched=100), None, card)
    assert [c.name for c in bad.failed] == ["ir_vs_mxnet_drop[ir-int8]", "box_match_rate[ir-int8]"]
    assert "drop 1.234 points exceeds the 1.000 allowed for INT8 by 0.234" in _line(bad, "ir_vs_mxnet_drop[ir-int8]")


def test_int8_outputs_with_a_data_problem_still_fail(card):
    problem = {"rpn_bbox_pred_stride8": {"passed": False, "reason": "non-finite values (NaN or inf) in an output"}}
    r = check_gate(_with_int8(**problem), None, card)
    assert [c.name for c in r.failed] == ["parity[ir-int8/*]"]
    assert _line(r, "parity[ir-int8/*]") == ("FAIL | parity[ir-int8/*] | rpn_bbox_pred_stride8: non-finite values "
                                             "(NaN or inf) in an output (INT8)")


def test_a_baseline_int8_missing_from_a_run_without_quantization_is_skipped(card):
    r = check_gate(make_summary(), Baseline.from_run(_with_int8()), card)
    assert r, r.lines()
    assert _line(r, "map_vs_baseline[ir-int8]") == (
        "SKIP | map_vs_baseline[ir-int8] | in the baseline, not in this run (no INT8 IR: run without --no-quantize, "
        "or 'ssh-toolkit quantize'); not compared")


def test_a_run_summary_with_int8_round_trips_with_null_tolerances(tmp_path):
    s = _with_int8()
    s.save(tmp_path)
    text = (tmp_path / "summary.json").read_text()
    assert "Infinity" not in text and '"atol": null' in text
    assert RunSummary.load(tmp_path).parity == s.parity  # (the tuple height_range comes back as a list)


def _with_native():
    s = make_summary()
    return dataclasses.replace(
        s, map={**s.map, "ir-native-fp32": 71.231, "ir-native-fp16": 71.180},
        precisions={**s.precisions, "ir-native-fp32": "FP32", "ir-native-fp16": "FP16"},
        parity={**s.parity, "ir-native-fp32": _parity("FP32"), "ir-native-fp16": _parity("FP16")},
        box_match={**s.box_match, "ir-native-fp32": _det(400, 400), "ir-native-fp16": _det(400, 392)})


def test_a_baseline_with_native_irs_and_a_run_without_any_skips_them(card):
    """'ssh-toolkit run' converts with Model Optimizer only: against a baseline recorded with both routes, the
    native route's models are a SKIP (like INT8 without quantization), not 'missing from the run'. A run that
    has native IRs but lost one still fails it."""
    base = Baseline.from_run(_with_native())
    r = check_gate(make_summary(), base, card)
    assert r, r.lines()
    assert _line(r, "map_vs_baseline[ir-native-fp16]") == (
        "SKIP | map_vs_baseline[ir-native-fp16] | in the baseline, not in this run (no IR of the native route: "
        "'ssh-toolkit convert --route native', then evaluate); not compared")
    s = _with_native()
    lost = dataclasses.replace(s, map={k: v for k, v in s.map.items() if k != "ir-native-fp16"})
    assert "map_vs_baseline[ir-native-fp16]" in [c.name for c in check_gate(lost, base, card).failed]
