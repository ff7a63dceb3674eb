"""Regression gate: one evaluation run (``RunSummary``) against a recorded baseline, under the card's thresholds.

Usage::

    summary = RunSummary.load("reports/runs/<run-id>")
    result = check_gate(summary, Baseline.load("reports/baselines/ssh-mxnet.json"), card)
    print(result.verdict())        # results: gate/result.py; the baseline file: gate/baseline.py

Rules (``Check.name`` is ``rule[subject]``; thresholds from ``card.gates`` / ``card.tolerances``):

    map_vs_baseline[<model>]            mAP may drop at most gates.map_vs_baseline_atol points vs the baseline;
                                        a model of the baseline missing from the run fails (SKIP: an
                                        execution variant, INT8 or the native route absent from the whole run)
    map_vs_reference[<model>]           real weights only: |mAP - reference.map_percent| <= map_vs_reference_atol
                                        (stand-in weights: SKIP, never PASS)
    ir_vs_mxnet_drop[<ir>]              mAP(mxnet) - mAP(ir) in the same run <= gates.ir_vs_mxnet_drop[precision]
    parity[<ir>/<output>]               the run's recorded verdict for that output: |ir - mxnet| <= atol + rtol*|mxnet|
                                        everywhere and cosine >= min_cosine, judged when the run was made (the
                                        reason is shown when it failed); fails too when the run was judged under
                                        another tolerance than the card's
    box_match_rate[<ir>]                box match rate >= gates.min_box_match_rate[precision]

The last three only look at the run itself ("in-run" checks): a baseline is never recorded from a run that
fails one of them (:func:`write_baseline`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable

from ..card import DEFAULT_CARD, QUANTIZED, ModelCard, Tolerance
from ..errors import InputDataError
from ..run_record import REFERENCE_MODEL, OutputParity, RunSummary, ir_model_name, order_models
from .baseline import Baseline, _is_number, check_comparable, update_notes, write_baseline
from .result import Check, GateResult, localize_hints

# mAP values are sums of float64 terms: a drop of "0.01" can come out as 0.010000000000005. Differences this
# small are not regressions.
_MAP_EPS = 1e-9
_RATE_EPS = 1e-12


def _models(current: RunSummary) -> list[str]:
    """Models the run evaluated: those with an mAP, a numeric parity or a box match rate."""
    return list(dict.fromkeys([*current.map, *current.parity, *current.box_match]))


def _ordered(models: Iterable[str], card: ModelCard) -> list[str]:
    return order_models(models, card.precisions)


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _precision(current: RunSummary, ir: str, card: ModelCard) -> str:
    p = current.precisions.get(ir)
    if p is None:
        raise InputDataError(f"run {current.run_id}: summary.json has no precision for model {ir!r} "
                             f"(precisions: {current.precisions})")
    if p not in card.gates.ir_vs_mxnet_drop or p not in card.gates.min_box_match_rate or (
            p not in card.tolerances and not card.parity_reported_only(p)):
        raise InputDataError(f"run {current.run_id}: model {ir!r} has precision {p!r}, which {card.path} has no "
                             f"gates or tolerances for")
    return p


_NATIVE = ir_model_name("FP32", route="native").removesuffix("fp32")  # "ir-native-": the native route's models


def _map_vs_baseline(current: RunSummary, baseline: Baseline | None, card: ModelCard,
                     models: list[str]) -> list[Check]:
    atol = card.gates.map_vs_baseline_atol
    if baseline is None:
        return [Check("map_vs_baseline", None, atol, None, None, "no baseline given: mAP not compared")]
    checks = []
    for m in _ordered([*baseline.map, *models], card):
        name = f"map_vs_baseline[{m}]"
        b = baseline.map.get(m)
        v = current.map.get(m)
        if b is None:
            if v is not None:
                checks.append(Check(name, v, None, None, None, f"mAP {v:.3f}: not in the baseline (recorded before "
                                    f"this model was evaluated, or on a CPU that runs it otherwise), not compared"))
            continue
        if v is None:
            if "@" in m:  # an execution variant: its absence says where the run ran, not that it regressed
                checks.append(Check(name, None, b - atol, b, None, _variant_absent(m, current), ">="))
            elif m == ir_model_name(QUANTIZED) and not any(p.split("@")[0] == QUANTIZED
                                                            for p in current.precisions.values()):
                checks.append(Check(name, None, b - atol, b, None, "in the baseline, not in this run (no INT8 IR: "
                                    "run without --no-quantize, or 'ssh-toolkit quantize'); not compared", ">="))
            elif m.startswith(_NATIVE) and not any(x.startswith(_NATIVE) for x in current.map):
                # 'ssh-toolkit run' converts with Model Optimizer only: no native IR at all is not a regression
                checks.append(Check(name, None, b - atol, b, None, "in the baseline, not in this run (no IR of the "
                                    "native route: 'ssh-toolkit convert --route native', then evaluate); not "
                                    "compared", ">="))
            else:
                checks.append(Check(name, None, b - atol, b, False,
                                    f"in the baseline (mAP {b:.3f}) but missing from the run", ">="))
            continue
        if not _finite(v):
            checks.append(Check(name, v, b - atol, b, False, f"mAP is {v}, not a number", ">="))
            continue
        d = v - b
        if -d > atol + _MAP_EPS:
            detail = (f"mAP {v:.3f} vs baseline {b:.3f}: dropped {-d:.3f} points, {-d - atol:.3f} more than the "
                      f"{atol:.3f} allowed")
            passed = False
        elif d > atol + _MAP_EPS:
            detail = (f"mAP {v:.3f} vs baseline {b:.3f}: improved by {d:.3f} points (more than the {atol:.3f} "
                      f"tolerance; record it with --update-baseline)")
            passed = True
        else:
            detail = f"mAP {v:.3f} vs baseline {b:.3f}: {d:+.3f} points (may drop at most {atol:.3f})"
            passed = True
        checks.append(Check(name, v, b - atol, b, passed, detail, ">="))
    return checks


def _variant_absent(model: str, current: RunSummary) -> str:
    """Why the run has no ``ir-fp32@bf16`` that the baseline has: the CPU, or the options of the run."""
    wanted = model.split("@", 1)[1]
    rt = current.runtime or {}
    default = rt.get("default_exec_precision")
    where = f"{rt.get('device', 'the device')} {rt.get('cpu', '')}".strip()
    if default and default != wanted:
        return (f"in the baseline, not in this run: {where} runs IRs in {default} by default, not {wanted} "
                f"(another CPU than the baseline's); not compared")
    return "in the baseline, not in this run (not asked for with --exec-precision); not compared"


def _map_vs_reference(current: RunSummary, card: ModelCard, models: list[str]) -> list[Check]:
    ref, atol = card.reference_map, card.gates.map_vs_reference_atol
    checks = []
    # The published figure is for the whole reference dataset; a card may say how many images that is.
    full = card.reference_n_images
    for m in _ordered([m for m in models if m in current.map], card):
        name, v = f"map_vs_reference[{m}]", current.map[m]
        shown = f"mAP {v:.3f}" if _finite(v) else f"mAP {v}"
        if current.weights != "real":
            checks.append(Check(name, v, atol, ref, None,
                                f"{shown}: stand-in weights: not compared with the published {ref:.2f} %", "±"))
        elif current.input_size != card.input.size:
            checks.append(Check(name, v, atol, ref, None, f"{shown}: evaluated at {current.input_size}x"
                                f"{current.input_size}, the published figure is at {card.input.size}x"
                                f"{card.input.size}: not compared with the published {ref:.2f} %", "±"))
        elif full and current.n_images != full:
            checks.append(Check(name, v, atol, ref, None, f"{shown}: evaluated {current.n_images} of the "
                                f"{full} images of {card.reference_dataset}: not compared with the published "
                                f"{ref:.2f} %", "±"))
        elif not _finite(v):
            checks.append(Check(name, v, atol, ref, False, f"mAP is {v}, not a number", "±"))
        else:
            d = abs(v - ref)
            if d > atol + _MAP_EPS:
                detail = (f"mAP {v:.3f} vs published {ref:.3f}: off by {v - ref:+.3f} points, {d - atol:.3f} more "
                          f"than the {atol:.3f} allowed")
            else:
                detail = f"mAP {v:.3f} vs published {ref:.3f}: {v - ref:+.3f} points (within {atol:.3f})"
            checks.append(Check(name, v, atol, ref, d <= atol + _MAP_EPS, detail, "±"))
    return checks


def _ir_vs_mxnet(current: RunSummary, baseline: Baseline | None, card: ModelCard, irs: list[str]) -> list[Check]:
    checks = []
    mx = current.map.get(REFERENCE_MODEL)
    for ir in irs:
        p = _precision(current, ir, card)
        lim = card.gates.ir_vs_mxnet_drop[p]
        name = f"ir_vs_mxnet_drop[{ir}]"
        v = current.map.get(ir)
        b = None
        if baseline is not None and ir in baseline.map and REFERENCE_MODEL in baseline.map:
            b = baseline.map[REFERENCE_MODEL] - baseline.map[ir]
        if v is None or mx is None:
            what = "no mAP for this IR" if v is None else "no mxnet mAP"
            checks.append(Check(name, None, lim, b, False, f"{what} in the run: the drop cannot be measured"))
            continue
        if not (_finite(v) and _finite(mx)):
            checks.append(Check(name, None, lim, b, False, f"mAP {v} vs mxnet {mx}: not a number"))
            continue
        drop = mx - v
        if drop > lim + _MAP_EPS:
            detail = (f"mAP {v:.3f} vs mxnet {mx:.3f}: drop {drop:.3f} points exceeds the {lim:.3f} allowed for "
                      f"{p} by {drop - lim:.3f}")
        else:
            detail = f"mAP {v:.3f} vs mxnet {mx:.3f}: drop {drop:.3f} <= {lim:.3f} allowed for {p}"
        checks.append(Check(name, drop, lim, b, drop <= lim + _MAP_EPS, detail))
    return checks


def _parity(current: RunSummary, baseline: Baseline | None, card: ModelCard, irs: list[str]) -> list[Check]:
    """One check per IR output: the verdict and reason the run recorded (decided once, when the run was made).

    The gate never re-judges the figures; it only makes sure the run was judged under the card's tolerance.
    """
    checks = []
    for ir in irs:
        p = _precision(current, ir, card)
        outs = current.parity.get(ir)
        if not outs:
            checks.append(Check(f"parity[{ir}/*]", None, None, None, False,
                                f"no numeric parity recorded for {ir} in this run"))
            continue
        if card.parity_reported_only(p):
            checks.append(_parity_reported(ir, p, outs))
            continue
        base = (baseline.parity.get(ir, {}) if baseline is not None else {})
        for out in [*card.output_names, *sorted(set(outs) - set(card.output_names))]:
            name, s = f"parity[{ir}/{out}]", outs.get(out)
            if out not in card.output_names:
                checks.append(Check(name, None, None, None, False,
                                    f"output {out!r} is not declared by the card {card.name}"))
                continue
            tol = card.tolerance(p, out)
            if s is None:
                checks.append(Check(name, None, tol.atol, None, False, "output missing from the run's parity"))
                continue
            b = base.get(out, {}).get("min_passing_atol")
            changed = _tolerance_changes(s, tol)
            if changed:
                checks.append(Check(name, s.min_passing_atol, s.atol, b, False,
                                    f"the run judged it {'PASS' if s.passed else 'FAIL'} under {changed} ({p}): "
                                    f"re-score the run with this card ('ssh-toolkit evaluate' re-scores from its "
                                    f"cache)"))
            elif s.passed is True:
                checks.append(Check(name, s.min_passing_atol, s.atol, b, True,
                                    f"needs atol {s.min_passing_atol:.3e} <= {s.atol:.1e}, cosine {s.cosine:.9f} >= "
                                    f"{s.min_cosine} ({p}) (max_abs {s.max_abs:.3e})"))
            else:
                checks.append(Check(name, s.min_passing_atol, s.atol, b, False,
                                    f"{s.reason or 'failed (the run recorded no reason)'} ({p})"))
    return checks


def _parity_reported(ir: str, p: str, outs: dict[str, OutputParity]) -> Check:
    """The INT8 IR's numeric differences: shown, not judged (it is gated on mAP drop and box match rate); only a
    data problem the run recorded (a shape mismatch, non-finite values) fails it."""
    bad = {o: s for o, s in outs.items() if s.passed is False}
    if bad:
        return Check(f"parity[{ir}/*]", None, None, None, False,
                     "; ".join(f"{o}: {s.reason or 'failed'}" for o, s in bad.items()) + f" ({p})")
    worst = max(outs.values(), key=lambda s: s.max_abs)
    return Check(f"parity[{ir}/*]", worst.max_abs, None, None, None,
                 f"max |diff| {worst.max_abs:.3e}, cosine >= {min(s.cosine for s in outs.values()):.6f} over "
                 f"{len(outs)} outputs: reported, not gated ({p} is gated on mAP drop and box match rate)")


def _tolerance_changes(s: OutputParity, tol: Tolerance) -> str:
    """How the tolerance the run recorded differs from the card's: ``atol 1.0e-01, the card now says 5.0e-02``."""
    recorded = {"atol": s.atol, "min_cosine": s.min_cosine, "rtol": s.rtol}
    out = [f"{k} {v:g}, the card now says {getattr(tol, k):g}" for k, v in recorded.items()
           if v is not None and v != getattr(tol, k)]  # rtol is not recorded by format-1 summaries
    return "; ".join(out)


def _box_match(current: RunSummary, baseline: Baseline | None, card: ModelCard, irs: list[str]) -> list[Check]:
    checks = []
    for ir in irs:
        p = _precision(current, ir, card)
        lim = card.gates.min_box_match_rate[p]
        name = f"box_match_rate[{ir}]"
        b = (baseline.box_match.get(ir, {}).get("box_match_rate") if baseline is not None else None)
        d = current.box_match.get(ir)
        if d is None:
            checks.append(Check(name, None, lim, b, False, f"no box match rate recorded for {ir} in this run",
                                ">="))
            continue
        r = d.box_match_rate
        what = f"{d.matched} of {d.n_ref} MXNet detections (score >= {d.min_score:g}) reproduced at IoU >= {d.iou:g}"
        if not _finite(r):
            checks.append(Check(name, r, lim, b, False, f"box match rate is {r}, not a number", ">="))
        elif r < lim - _RATE_EPS:
            checks.append(Check(name, r, lim, b, False,
                                f"{what}: rate {r:.4f} < {lim:.4f} ({p}), short by {lim - r:.4f}", ">="))
        else:
            checks.append(Check(name, r, lim, b, True, f"{what}: rate {r:.4f} >= {lim:.4f} ({p})", ">="))
    return checks


def check_gate(current: RunSummary, baseline: Baseline | None, card: ModelCard,
               baseline_name: str = "", *, workspace: str | Path | None = None,
               data_root: str | Path | None = None) -> GateResult:
    """Apply every rule; raises InputDataError when the run and baseline cannot be compared (or the card does
    not fit the run). ``baseline_name`` (e.g. the file path) only labels the output; ``workspace`` and
    ``data_root`` (the run's, absolute) go into the localize hint of a failed parity rule."""
    if current.model != card.name:
        raise InputDataError(f"run {current.run_id} was made with the card {current.model!r}, the gate uses "
                             f"{card.name!r} ({card.path})")
    if baseline is not None:
        check_comparable(current, baseline, f"baseline {baseline_name}".rstrip())
    models = _models(current)
    irs = _ordered([m for m in models if m != REFERENCE_MODEL], card)
    checks = [
        *_map_vs_baseline(current, baseline, card, models),
        *_map_vs_reference(current, card, models),
        *_ir_vs_mxnet(current, baseline, card, irs),
        *_parity(current, baseline, card, irs),
        *_box_match(current, baseline, card, irs),
    ]
    label = baseline_name or (f"run {baseline.source_run}" if baseline is not None else "")
    card_args = () if card.path == DEFAULT_CARD else ("--pipeline", os.path.abspath(card.path))
    root = str(data_root) if data_root else current.dataset.get("root")
    hints = localize_hints(checks, current.checkpoint_kind, current.input_size, root, card_args,
                           os.path.abspath(workspace) if workspace else None)
    return GateResult(current.run_id, current.model, current.weights, current.note, label, tuple(checks),
                      notes=_platform_notes(current, baseline), hints=hints)


def _platform_notes(current: RunSummary, baseline: Baseline | None) -> tuple[str, ...]:
    """The runtime differences between run and baseline that a reader of the verdict should know of."""
    if baseline is None:
        return ()
    notes = []
    a, b = current.versions.get("openvino"), baseline.versions.get("openvino")
    if a and b and a != b:
        notes.append(f"note: this run used OpenVINO {a}, the baseline {b}; the rules apply all the same")
    ca, cb = (current.runtime or {}).get("cpu"), (baseline.runtime or {}).get("cpu")
    if ca and cb and ca != cb:
        notes.append(f"note: this run ran on {ca}, the baseline on {cb}")
    return tuple(notes)




def _run_places(run_dir: str | Path) -> dict[str, str]:
    """The absolute workspace and data root the run used, from its ``metadata.json`` (for the localize hint only:
    left out when unknown)."""
    try:
        meta = json.loads((Path(run_dir) / "metadata.json").read_text())
        places = {k: meta.get(k) for k in ("workspace", "data_root")}
    except (OSError, ValueError, AttributeError):
        return {}
    return {k: v for k, v in places.items() if isinstance(v, str) and v}


def gate_run(run_dir: str | Path, baseline_path: str | Path, card: ModelCard, *,
             update_baseline: bool = False) -> GateResult:
    """What ``ssh-toolkit gate`` does, minus printing and exit codes (``result.raise_for_failure()``).

    Normal mode: load the run and the baseline and check them; InputDataError when either is missing or corrupt
    or they are not comparable. ``update_baseline``: check the run on its own (map_vs_baseline is skipped), then
    record it as the new baseline unless one of its in-run checks failed (the file is then left unchanged and
    the result is falsy). The result's ``notes`` say what the update changed and whether it was written.
    """
    summary = RunSummary.load(run_dir)
    where = _run_places(run_dir)
    if not update_baseline:
        return check_gate(summary, Baseline.load(baseline_path), card, str(baseline_path), **where)
    result = check_gate(summary, None, card, **where)
    notes = update_notes(summary, baseline_path)
    bad = result.failed_in_run
    if bad:
        notes += (f"baseline NOT written: {len(bad)} in-run check(s) failed; {baseline_path} left unchanged",)
    else:
        write_baseline(summary, result, baseline_path)
        notes += (f"baseline written: {baseline_path}",)
    return replace(result, notes=result.notes + notes)
