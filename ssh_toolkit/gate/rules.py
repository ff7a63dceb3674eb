"""Regression gate: one evaluation run (``RunSummary``) against a recorded baseline, under the card's thresholds.

Usage::

    summary = RunSummary.load("reports/runs/<run-id>")
    result = check_gate(summary, Baseline.load("reports/baselines/ssh-mxnet.json"), card)
    for line in result.lines():
        print(line)                # PASS | map_vs_baseline[mxnet] | mAP 84.790 vs baseline 84.800: ...
    if not result:                 # bool(result) == every check passed (skipped checks do not fail)
        result.raise_for_failure() # GateFailure -> exit code 1

Rules (``Check.name`` is ``rule[subject]``; thresholds from ``card.gates`` / ``card.tolerances``):

    map_vs_baseline[<model>]            mAP may drop at most gates.map_vs_baseline_atol points vs the baseline;
                                        a model of the baseline missing from the run fails
    map_vs_reference[<model>]           real weights only: |mAP - reference.map_percent| <= map_vs_reference_atol
                                        (stand-in weights: SKIP, never PASS)
    ir_vs_mxnet_drop[<ir>]              mAP(mxnet) - mAP(ir) in the same run <= gates.ir_vs_mxnet_drop[precision]
    parity_atol[<ir>/<output>]          min_passing_atol <= the card's atol for that precision and output
    parity_cosine[<ir>/<output>]        cosine >= the card's min_cosine
    box_match_rate[<ir>]                detection parity match_rate >= gates.min_box_match_rate[precision]

The last four only look at the run itself ("in-run" checks): a baseline is never recorded from a run that
fails one of them (:func:`write_baseline`). A baseline that is not comparable with the run (other checkpoint
kind, input size, protocol or dataset) is an input error (:class:`InputDataError`, exit 2), not a regression.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..card import ModelCard
from ..errors import EnvironmentProblem, GateFailure, InputDataError, UsageError
from ..fileio import write_json
from ..run_record import REFERENCE_MODEL, RunSummary, order_models

BASELINE_FORMAT = 1
IN_RUN_RULES = ("ir_vs_mxnet_drop", "parity_atol", "parity_cosine", "box_match_rate")
# mAP values are sums of float64 terms: a drop of "0.01" can come out as 0.010000000000005. Differences this
# small are not regressions.
_MAP_EPS = 1e-9
_RATE_EPS = 1e-12
_FORMATS = {"map_vs_baseline": ".3f", "map_vs_reference": ".3f", "ir_vs_mxnet_drop": ".3f",
            "parity_atol": ".3e", "parity_cosine": ".9f", "box_match_rate": ".4f"}
_VERDICT = {True: "PASS", False: "FAIL", None: "SKIP"}


# --------------------------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Check:
    """One rule applied to one model / output.

    ``passed`` is True, False, or None for a check that was skipped (not applicable, e.g. the reference mAP with
    stand-in weights); a skip never counts as a pass nor as a failure. ``op`` says how ``value`` is held against
    ``limit``: "<=", ">=", or "±" (``|value - baseline| <= limit``). ``baseline`` is the value compared with
    (the baseline's, or the published reference for map_vs_reference), when there is one.
    """

    name: str  # rule[subject], e.g. parity_atol[ir-fp16/rpn_bbox_pred_stride8]
    value: float | None
    limit: float | None
    baseline: float | None
    passed: bool | None
    detail: str
    op: str = "<="

    @property
    def rule(self) -> str:
        return self.name.split("[", 1)[0]

    @property
    def subject(self) -> str:
        return self.name.split("[", 1)[1].rstrip("]") if "[" in self.name else ""

    @property
    def status(self) -> str:
        return _VERDICT[self.passed]

    @property
    def in_run(self) -> bool:
        return self.rule in IN_RUN_RULES

    def _fmt(self, v: float | None) -> str:
        if v is None:
            return ""
        if not math.isfinite(v):
            return str(v)
        return format(v, _FORMATS.get(self.rule, ".6g"))

    @property
    def value_text(self) -> str:
        return self._fmt(self.value)

    @property
    def limit_text(self) -> str:
        if self.limit is None:
            return ""
        if self.op == "±":
            return f"{self._fmt(self.baseline)} ± {self._fmt(self.limit)}"
        return f"{self.op} {self._fmt(self.limit)}"

    def line(self) -> str:
        return f"{self.status} | {self.name} | {self.detail}"


@dataclass(frozen=True)
class GateResult:
    """Every check of one gate run; truthy iff no check failed (skipped checks do not fail)."""

    run_id: str
    model: str
    weights: str
    note: str  # the run's stand-in banner
    baseline: str  # where the baseline came from ("" when none was given)
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    @property
    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.passed is None]

    @property
    def failed_in_run(self) -> list[Check]:
        return [c for c in self.failed if c.in_run]

    def verdict(self) -> str:
        """One line: ``gate PASS: 31 checks passed, 3 skipped`` / ``gate FAIL: 2 of 34 checks failed (...)``."""
        n, f, s = len(self.checks), self.failed, self.skipped
        skipped = f", {len(s)} skipped" if s else ""
        standin = "; stand-in weights" if self.weights != "real" else ""
        if not f:
            return f"gate PASS: {n - len(s)} checks passed{skipped}{standin}"
        names = ", ".join(c.name for c in f[:5]) + (f" and {len(f) - 5} more" if len(f) > 5 else "")
        return f"gate FAIL: {len(f)} of {n} checks failed ({names}){skipped}{standin}"

    def lines(self) -> list[str]:
        """``PASS | rule[subject] | detail`` for every check, in rule order."""
        return [c.line() for c in self.checks]

    def raise_for_failure(self) -> None:
        if not self:
            raise GateFailure(f"run {self.run_id}: {self.verdict()}")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{
            "verdict": c.status, "rule": c.rule, "subject": c.subject, "name": c.name, "value": c.value,
            "op": c.op, "limit": c.limit, "baseline": c.baseline, "detail": c.detail,
        } for c in self.checks], columns=["verdict", "rule", "subject", "name", "value", "op", "limit",
                                          "baseline", "detail"])

    def markdown(self) -> str:
        """Heading, stand-in banner, notes and a table of every rule with value, limit and verdict."""
        head = "PASS" if self else "FAIL"
        against = f" against baseline `{self.baseline}`" if self.baseline else " (no baseline)"
        out = [f"### ssh-toolkit gate: {head}", "", f"Run `{self.run_id}` ({self.model}){against}: "
               f"{self.verdict()}.", ""]
        if self.weights != "real" and self.note:
            out += [f"> {self.note}", ""]
        for n in self.notes:
            out += [f"- {n}"]
        if self.notes:
            out.append("")
        out += ["| verdict | rule | value | limit | baseline | detail |", "|---|---|---|---|---|---|"]
        for c in self.checks:
            cells = [f"**{c.status}**" if c.passed is False else c.status, c.name, c.value_text, c.limit_text,
                     c._fmt(c.baseline), c.detail]
            out.append("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
        return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------------------------
# Baseline file


def _plain(obj: Any) -> Any:
    """JSON round trip: tuples become lists, so in-memory and loaded records compare equal."""
    return json.loads(json.dumps(obj, default=str))


@dataclass(frozen=True)
class Baseline:
    """The figures of an accepted run, kept in ``reports/baselines/<name>.json`` (see :meth:`to_json`)."""

    created: str
    source_run: str  # JSON key "from_run" (the name of the constructor below)
    model: str  # the card's name
    weights: str  # real | stand-in
    checkpoint_kind: str  # real | standin | toy
    input_size: int
    protocol: str
    protocol_params: dict[str, Any]
    dataset: dict[str, Any]  # split, n_images, identifiers_sha256, skipped (no machine-specific root)
    n_images: int
    precisions: dict[str, str]  # model -> precision
    map: dict[str, float]  # model -> mAP in percent
    parity: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # IR -> output -> stats
    detection_parity: dict[str, dict[str, float]] = field(default_factory=dict)  # IR -> match_rate, matched, n_ref
    card_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    format: int = BASELINE_FORMAT

    REQUIRED = ("created", "from_run", "model", "weights", "checkpoint_kind", "input_size", "protocol",
                "protocol_params", "dataset", "map")

    @classmethod
    def from_run(cls, summary: RunSummary) -> "Baseline":
        dataset = {k: v for k, v in summary.dataset.items() if k != "root"}
        return cls(
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source_run=summary.run_id,
            model=summary.model,
            weights=summary.weights,
            checkpoint_kind=summary.checkpoint_kind,
            input_size=int(summary.input_size),
            protocol=summary.protocol,
            protocol_params=_plain(summary.protocol_params),
            dataset=_plain(dataset),
            n_images=int(summary.n_images),
            precisions=dict(summary.precisions),
            map={m: float(v) for m, v in summary.map.items()},
            parity={ir: {o: {"max_abs": float(s.max_abs), "min_passing_atol": float(s.min_passing_atol),
                             "cosine": float(s.cosine)} for o, s in outs.items()}
                    for ir, outs in summary.parity.items()},
            detection_parity={ir: {"match_rate": float(d.match_rate), "matched": int(d.matched),
                                   "n_ref": int(d.n_ref)} for ir, d in summary.detection_parity.items()},
            card_sha256=summary.card_sha256,
            versions=dict(summary.versions),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "created": self.created, "from_run": self.source_run, "model": self.model,
            "weights": self.weights, "checkpoint_kind": self.checkpoint_kind, "input_size": self.input_size,
            "protocol": self.protocol, "protocol_params": self.protocol_params, "dataset": self.dataset,
            "n_images": self.n_images, "precisions": self.precisions, "map": self.map, "parity": self.parity,
            "detection_parity": self.detection_parity, "card_sha256": self.card_sha256,
            "versions": self.versions,
        }

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Baseline":
        path = Path(path)
        if path.is_dir():
            raise InputDataError(f"{path}: is a folder; --baseline expects a baseline JSON file")
        if not path.is_file():
            raise InputDataError(f"{path}: baseline not found; record one with 'ssh-toolkit gate RUN_DIR "
                                 f"--baseline {path} --update-baseline'")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputDataError(f"{path}: not a valid baseline: not JSON (line {e.lineno}: {e.msg})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputDataError(f"{path}: cannot read the baseline ({e})") from None
        if not isinstance(data, dict):
            raise InputDataError(f"{path}: not a valid baseline: expected a JSON object")
        missing = [k for k in cls.REQUIRED if k not in data]
        if missing:
            raise InputDataError(f"{path}: not a valid baseline: missing key(s) {', '.join(missing)}")
        fmt = data.get("format", BASELINE_FORMAT)
        if not isinstance(fmt, int) or fmt > BASELINE_FORMAT:
            raise InputDataError(f"{path}: baseline format {fmt!r} is newer than this ssh-toolkit reads "
                                 f"({BASELINE_FORMAT})")

        def bad(key: str, what: str) -> InputDataError:
            return InputDataError(f"{path}: not a valid baseline: key '{key}': {what}")

        m = data["map"]
        if not isinstance(m, dict) or not all(_is_number(v) for v in m.values()):
            raise bad("map", "expected model name -> mAP in percent")
        for key in ("protocol_params", "dataset"):
            if not isinstance(data[key], dict):
                raise bad(key, "expected a JSON object")
        if not isinstance(data["input_size"], int) or isinstance(data["input_size"], bool):
            raise bad("input_size", f"expected an integer, got {data['input_size']!r}")
        for key in ("parity", "detection_parity", "precisions", "versions"):
            if not isinstance(data.get(key, {}), dict):
                raise bad(key, "expected a JSON object")
        n_images = data.get("n_images", data["dataset"].get("n_images", 0))
        return cls(
            created=str(data["created"]), source_run=str(data["from_run"]), model=str(data["model"]),
            weights=str(data["weights"]), checkpoint_kind=str(data["checkpoint_kind"]),
            input_size=data["input_size"], protocol=str(data["protocol"]),
            protocol_params=data["protocol_params"], dataset=data["dataset"], n_images=int(n_images),
            precisions=data.get("precisions", {}), map={k: float(v) for k, v in m.items()},
            parity=data.get("parity", {}), detection_parity=data.get("detection_parity", {}),
            card_sha256=str(data.get("card_sha256", "")), versions=data.get("versions", {}), format=fmt,
        )


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)  # numpy floats too


def _identity(rec: RunSummary | Baseline) -> dict[str, Any]:
    """What must be equal for two sets of figures to be compared."""
    ds = rec.dataset or {}
    return {
        "model": rec.model,
        "weights": rec.weights,
        "checkpoint_kind": rec.checkpoint_kind,
        "input_size": rec.input_size,
        "n_images": rec.n_images,
        "protocol": rec.protocol,
        "protocol_params": _plain(rec.protocol_params),
        "dataset.identifiers_sha256": ds.get("identifiers_sha256"),
        # The ground truth itself: a sample regenerated with another seed keeps its file names. (The images'
        # bytes are recorded but not compared: another libjpeg encodes the same sample differently.)
        "dataset.annotations_sha256": ds.get("annotations_sha256"),
        "dataset.n_images": ds.get("n_images"),
    }


def comparability_differences(a: RunSummary | Baseline, b: RunSummary | Baseline) -> list[str]:
    """``["input_size 640 vs 128", "protocol_params.nms_threshold 0.3 vs 0.4", ...]``; empty when comparable."""
    ia, ib = _identity(a), _identity(b)
    out = []
    for key in ia:
        va, vb = ia[key], ib[key]
        if va == vb:
            continue
        if key == "protocol_params" and isinstance(va, dict) and isinstance(vb, dict):
            for k in sorted(set(va) | set(vb)):
                if va.get(k) != vb.get(k):
                    out.append(f"protocol_params.{k} {_short(va.get(k, '(absent)'))} vs "
                               f"{_short(vb.get(k, '(absent)'))}")
        else:
            out.append(f"{key} {_short(va)} vs {_short(vb)}")
    return out


def _short(v: Any) -> str:
    s = str(v)
    return s[:12] + "..." if isinstance(v, str) and len(s) == 64 else s  # sha256 digests


def check_comparable(current: RunSummary, baseline: Baseline, where: str = "baseline") -> None:
    diffs = comparability_differences(baseline, current)
    if diffs:
        raise InputDataError(
            f"{where} (from run {baseline.source_run}) and run {current.run_id} are not comparable: "
            f"{'; '.join(diffs)} (baseline vs run); record a baseline for this setup with --update-baseline")


# --------------------------------------------------------------------------------------------------------------
# The rules


def _models(current: RunSummary) -> list[str]:
    """Models the run evaluated: those with an mAP, a numeric parity or a detection parity."""
    return list(dict.fromkeys([*current.map, *current.parity, *current.detection_parity]))


def _ordered(models: Iterable[str], card: ModelCard) -> list[str]:
    return order_models(models, card.precisions)


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _precision(current: RunSummary, ir: str, card: ModelCard) -> str:
    p = current.precisions.get(ir)
    if p is None:
        raise InputDataError(f"run {current.run_id}: summary.json has no precision for model {ir!r} "
                             f"(precisions: {current.precisions})")
    if p not in card.gates.ir_vs_mxnet_drop or p not in card.gates.min_box_match_rate or p not in card.tolerances:
        raise InputDataError(f"run {current.run_id}: model {ir!r} has precision {p!r}, which {card.path} has no "
                             f"gates or tolerances for")
    return p


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
                checks.append(Check(name, v, None, None, None, f"mAP {v:.3f}: not in the baseline, not compared"))
            continue
        if v is None:
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
    checks = []
    for ir in irs:
        p = _precision(current, ir, card)
        outs = current.parity.get(ir)
        if not outs:
            checks.append(Check(f"parity_atol[{ir}/*]", None, None, None, False,
                                f"no numeric parity recorded for {ir} in this run"))
            continue
        base = (baseline.parity.get(ir, {}) if baseline is not None else {})
        for out in [*card.output_names, *sorted(set(outs) - set(card.output_names))]:
            s = outs.get(out)
            if out not in card.output_names:
                checks.append(Check(f"parity_atol[{ir}/{out}]", None, None, None, False,
                                    f"output {out!r} is not declared by the card {card.name}"))
                continue
            tol = card.tolerance(p, out)
            if s is None:
                checks.append(Check(f"parity_atol[{ir}/{out}]", None, tol.atol, None, False,
                                    "output missing from the run's parity"))
                continue
            b = base.get(out, {})
            a, lim = s.min_passing_atol, tol.atol
            # The run marks an output failed for a shape mismatch or non-finite values even when its numbers pass.
            problem = not s.passed and s.min_passing_atol <= s.atol and s.cosine >= s.min_cosine
            if not _finite(a):
                checks.append(Check(f"parity_atol[{ir}/{out}]", a, lim, b.get("min_passing_atol"), False,
                                    f"min passing atol is {a}, not a number"))
            elif a > lim:
                checks.append(Check(f"parity_atol[{ir}/{out}]", a, lim, b.get("min_passing_atol"), False,
                                    f"needs atol {a:.3e} > {lim:.1e} ({p}), exceeds it by {a - lim:.3e} "
                                    f"(max_abs {s.max_abs:.3e})"))
            elif problem:
                checks.append(Check(f"parity_atol[{ir}/{out}]", a, lim, b.get("min_passing_atol"), False,
                                    f"the run marked this output failed: {s.problem or 'see parity.csv'}"))
            else:
                checks.append(Check(f"parity_atol[{ir}/{out}]", a, lim, b.get("min_passing_atol"), True,
                                    f"needs atol {a:.3e} <= {lim:.1e} ({p}) (max_abs {s.max_abs:.3e})"))
            c, cmin = s.cosine, tol.min_cosine
            name = f"parity_cosine[{ir}/{out}]"
            if not _finite(c):
                checks.append(Check(name, c, cmin, b.get("cosine"), False, f"cosine is {c}, not a number", ">="))
            elif c < cmin:
                checks.append(Check(name, c, cmin, b.get("cosine"), False,
                                    f"cosine {c:.9f} < {cmin} ({p}), short by {cmin - c:.3e}", ">="))
            else:
                checks.append(Check(name, c, cmin, b.get("cosine"), True, f"cosine {c:.9f} >= {cmin} ({p})", ">="))
    return checks


def _box_match(current: RunSummary, baseline: Baseline | None, card: ModelCard, irs: list[str]) -> list[Check]:
    checks = []
    for ir in irs:
        p = _precision(current, ir, card)
        lim = card.gates.min_box_match_rate[p]
        name = f"box_match_rate[{ir}]"
        b = (baseline.detection_parity.get(ir, {}).get("match_rate") if baseline is not None else None)
        d = current.detection_parity.get(ir)
        if d is None:
            checks.append(Check(name, None, lim, b, False, f"no detection parity recorded for {ir} in this run",
                                ">="))
            continue
        r = d.match_rate
        what = f"{d.matched} of {d.n_ref} MXNet detections (score >= {d.min_score:g}) reproduced at IoU >= {d.iou:g}"
        if not _finite(r):
            checks.append(Check(name, r, lim, b, False, f"match rate is {r}, not a number", ">="))
        elif r < lim - _RATE_EPS:
            checks.append(Check(name, r, lim, b, False,
                                f"{what}: rate {r:.4f} < {lim:.4f} ({p}), short by {lim - r:.4f}", ">="))
        else:
            checks.append(Check(name, r, lim, b, True, f"{what}: rate {r:.4f} >= {lim:.4f} ({p})", ">="))
    return checks


def check_gate(current: RunSummary, baseline: Baseline | None, card: ModelCard,
               baseline_name: str = "") -> GateResult:
    """Apply every rule; raises InputDataError when the run and baseline cannot be compared (or the card does
    not fit the run). ``baseline_name`` (e.g. the file path) only labels the output."""
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
    return GateResult(current.run_id, current.model, current.weights, current.note, label, tuple(checks))


# --------------------------------------------------------------------------------------------------------------
# Edges: files and the CI step summary


def write_baseline(summary: RunSummary, gate_result: GateResult, path: str | Path) -> Path:
    """Record ``summary`` as the baseline at ``path`` (atomic). Refuses when the run's own checks failed."""
    if gate_result.run_id != summary.run_id:
        raise UsageError(f"write_baseline: the gate result is for run {gate_result.run_id}, not {summary.run_id}")
    bad = gate_result.failed_in_run
    if bad:
        names = ", ".join(c.name for c in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise GateFailure(f"refusing to record a baseline from run {summary.run_id}: {len(bad)} of its in-run "
                          f"checks failed ({names}); {path} left unchanged")
    if not summary.map:
        raise UsageError(f"refusing to record a baseline from run {summary.run_id}: it has no mAP")
    return Baseline.from_run(summary).save(path)


def update_notes(summary: RunSummary, path: str | Path) -> tuple[str, ...]:
    """What replacing the baseline at ``path`` with ``summary`` changes, as short sentences (for the log)."""
    path = Path(path)
    if not path.exists():
        return (f"{path}: no baseline yet, recording run {summary.run_id}",)
    try:
        old = Baseline.load(path)
    except InputDataError as e:
        return (f"replacing an unreadable baseline: {e}",)
    diffs = comparability_differences(old, summary)
    notes = [f"{path}: replacing the baseline from run {old.source_run} ({old.created})"]
    if diffs:
        notes.append(f"the setup changes: {'; '.join(diffs)} (old vs new)")
    for m in _models_of(old.map, summary.map):
        a, b = old.map.get(m), summary.map.get(m)
        if a is None or b is None:
            notes.append(f"mAP[{m}]: {'new' if a is None else 'removed'}")
        else:
            notes.append(f"mAP[{m}]: {a:.3f} -> {b:.3f} ({b - a:+.3f})")
    return tuple(notes)


def _models_of(*maps: Mapping[str, float]) -> list[str]:
    return list(dict.fromkeys(m for d in maps for m in d))


def gate_run(run_dir: str | Path, baseline_path: str | Path, card: ModelCard, *,
             update_baseline: bool = False) -> GateResult:
    """What ``ssh-toolkit gate`` does, minus printing and exit codes (``result.raise_for_failure()``).

    Normal mode: load the run and the baseline and check them; InputDataError when either is missing or corrupt
    or they are not comparable. ``update_baseline``: check the run on its own (map_vs_baseline is skipped), then
    record it as the new baseline unless one of its in-run checks failed (the file is then left unchanged and
    the result is falsy). The result's ``notes`` say what the update changed and whether it was written.
    """
    summary = RunSummary.load(run_dir)
    if not update_baseline:
        return check_gate(summary, Baseline.load(baseline_path), card, str(baseline_path))
    result = check_gate(summary, None, card)
    notes = update_notes(summary, baseline_path)
    bad = result.failed_in_run
    if bad:
        notes += (f"baseline NOT written: {len(bad)} in-run check(s) failed; {baseline_path} left unchanged",)
    else:
        write_baseline(summary, result, baseline_path)
        notes += (f"baseline written: {baseline_path}",)
    return replace(result, notes=result.notes + notes)


def write_step_summary(markdown: str) -> Path | None:
    """Append ``markdown`` to the file named by ``$GITHUB_STEP_SUMMARY`` (GitHub Actions); no-op when unset."""
    target = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
    if not target:
        return None
    path = Path(target)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as e:
        raise EnvironmentProblem(f"$GITHUB_STEP_SUMMARY={target}: cannot append the gate summary ({e})") from None
    return path
