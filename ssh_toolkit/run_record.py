"""The structured record of an evaluation run: ``reports/runs/<run-id>/summary.json`` and its tables.

Gates and reports read runs only through this module (never by scraping logs or Markdown).

A run folder holds:
    summary.json            RunSummary (below)
    metrics.csv/.json       one row per model: model, precision, map_percent, ap, n_images, n_gt, n_pos,
                            n_detections, n_tp, n_fp, mean_latency_s
    per_image.csv/.json     one row per model and image: model, image, n_gt, n_pos, n_detections, n_tp, n_fp,
                            n_ignored, max_score, seconds
    pr_curves.csv/.json     model, recall, precision (at most ~2000 points per model, envelope-preserving)
    parity.csv/.json        numeric output diffs MXNet vs each IR over the dataset, with each output's verdict and
                            reason (metric.parity.ParityResult.to_frame)
    parity_histograms.csv   model, output, upper_edge, count: |diff| histogram per output (log-spaced bins)
    official.csv            model, setting, ap: official WIDER Easy/Medium/Hard AP (only with --official-gt)
    box_match.csv/.json     model, n_ref, n_test, matched, box_match_rate, only_ref, only_test, mean/max |score diff|
    detections.npz          per image: detections of every model, ground truth, position before --shard, and
                            the numeric-parity sums in joinable form (merge.py: exact merging of shard runs)
    report.md               what a person reads first
    report.html             the same with plots (ssh-toolkit report)

Verdicts are decided once, when the run is made, and recorded: each output's numeric parity carries ``passed``
and the ``reason`` it failed; readers (the gate, the reports) show them and never re-derive them.

summary.json format 2 (``format`` key): box match under ``box_match`` (``box_match_rate``), parity ``reason``,
weights ``standin``. Format 1 (no ``format`` key: ``detection_parity``/``match_rate``, parity ``problem``,
weights ``stand-in``) is still read, upgraded on load.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import InputDataError
from .fileio import make_dirs, write_json
from .metric.box_match import BoxMatch
from .metric.parity import OutputDiff

SUMMARY = "summary.json"
SUMMARY_FORMAT = 2
REFERENCE_MODEL = "mxnet"  # the original model every IR is compared with


def default_run_dir(what: str) -> Path:
    """Reserve ``reports/runs/<YYYYmmdd-HHMMSS>-<what>`` (``-2``, ``-3``, ... when taken) and return it.

    The folder is created exclusively, so runs started in the same second, in any number of processes, never
    share one; it holds only a reservation marker naming this process. If it is still only that when the process
    exits (the run failed or was interrupted before writing it), it is removed again; one a killed process left
    is removed by the next call (``fileio.remove_stale_reservations``).
    """
    import atexit
    from datetime import datetime

    from .fileio import remove_stale_reservations, reserve_dir

    runs = Path("reports") / "runs"
    make_dirs(runs.absolute())  # a file in the way is named absolutely (not "reports/runs: File exists")
    remove_stale_reservations(runs)
    stem = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{what}"
    n = 1
    while True:
        path = runs / (stem if n == 1 else f"{stem}-{n}")
        try:
            reserve_dir(path.absolute())
        except FileExistsError:
            n += 1
            continue
        if not _reserved:
            atexit.unregister(release_unused_run_dirs)  # registered once, however often it already ran
            atexit.register(release_unused_run_dirs)
        _reserved.append(path.absolute())  # released at exit even if the process changed folder
        return path


_reserved: list[Path] = []  # run folders default_run_dir created in this process and not yet released


def release_unused_run_dirs() -> list[Path]:
    """Remove the folders :func:`default_run_dir` reserved that are still only reserved; runs at exit."""
    from .fileio import release_reserved

    removed = []
    while _reserved:
        path = _reserved.pop()
        if release_reserved(path):  # not once the run was written there
            removed.append(path)
    return removed


ROUTES = ("mo", "native")  # how an IR was made: Model Optimizer (the default) or the native translator


def ir_model_name(precision: str, exec_precision: str | None = None, route: str = "mo") -> str:
    """``FP32`` -> ``ir-fp32``; with the precision it runs in when that is not pinned f32: ``ir-fp32@bf16``; an IR
    of the native route: ``ir-native-fp32`` (``ir-native-fp32@bf16``).

    How runs, tables and gate rules name an IR.
    """
    kind = "ir" if route == "mo" else f"ir-{route}"
    return f"{kind}-{precision.lower()}" + (f"@{exec_precision}" if exec_precision else "")


def order_models(models: Iterable[str], precisions: Sequence[str]) -> list[str]:
    """MXNet first, then the IRs in ``precisions`` order (the card's, or :attr:`RunSummary.ir_precisions`), each
    followed by its execution variants (``ir-fp32``, ``ir-fp32@bf16``, ``ir-fp16``, ...), then the native route's
    IRs in the same order (``ir-native-fp32``, ...), then anything else sorted; duplicates dropped."""
    models = list(dict.fromkeys(models))
    order = [REFERENCE_MODEL]
    for name in dict.fromkeys(ir_model_name(p.split("@")[0], route=r) for r in ROUTES for p in precisions):
        order += [name, *sorted(m for m in models if m.startswith(name + "@"))]
    order = list(dict.fromkeys(order))
    return [m for m in order if m in models] + sorted(m for m in models if m not in order)


@dataclass(frozen=True)
class OutputParity:
    """One output's numeric parity as the run judged it: the figures, the tolerance used, the verdict and why."""

    max_abs: float
    min_passing_atol: float
    atol: float | None  # None: reported only, not judged (INT8)
    cosine: float
    min_cosine: float | None
    passed: bool
    reason: str = ""  # why it failed (atol exceeded by how much, cosine too low, shape, non-finite); "" if passed
    rtol: float | None = None  # None in format-1 summaries, which did not record it

    @classmethod
    def of(cls, d: OutputDiff) -> "OutputParity":
        from .card import REPORTED_ONLY

        t = d.tolerance
        if t == REPORTED_ONLY:  # INT8: the differences are reported, no tolerance judged them (atol, min_cosine null)
            return cls(d.max_abs, d.min_passing_atol, None, d.cosine, None, d.passed, d.reason, None)
        return cls(d.max_abs, d.min_passing_atol, t.atol, d.cosine, t.min_cosine, d.passed, d.reason, t.rtol)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "OutputParity":
        d = dict(d)
        if "problem" in d:  # format 1: only data problems were named; a failed tolerance had no reason
            problem = d.pop("problem")
            d.setdefault("reason", problem or ("" if d.get("passed") else
                                               "failed (reason not recorded by this format-1 summary)"))
        return cls(**d)


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    model: str  # the card's name, e.g. ssh-mxnet
    map: dict[str, float]  # model name (mxnet, ir-fp32, ir-fp16) -> mAP in percent
    n_images: int
    input_size: int
    protocol: str
    protocol_params: dict[str, Any]
    weights: str  # "real" | "standin"
    checkpoint_kind: str  # real | standin | toy
    note: str  # the stand-in banner
    reference_map: float
    dataset: dict[str, Any]  # root, split, n_images, selection, skipped, identifiers/annotations/images_sha256
    precisions: dict[str, str]  # model name -> precision ("FP32" for mxnet)
    parity: dict[str, dict[str, OutputParity]] = field(default_factory=dict)  # IR model -> output -> verdict
    box_match: dict[str, BoxMatch] = field(default_factory=dict)  # IR model -> box match rate vs MXNet
    # model -> {easy, medium, hard}: the official WIDER FACE AP, only with --official-gt. NOT comparable with map.
    official: dict[str, dict[str, float]] = field(default_factory=dict)
    card_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""
    format: int = SUMMARY_FORMAT
    # Where the IRs ran: device, cpu, the cpu_flags that change results, and the device's default_exec_precision
    # (the precision an unpinned FP32 IR runs in there: what a deployment gets).
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def ir_precisions(self) -> tuple[str, ...]:
        """The IRs' precisions in the order the run recorded them (the card's order when it was made)."""
        return tuple(dict.fromkeys(p for m, p in self.precisions.items() if m != REFERENCE_MODEL))

    def ordered_models(self, models: Iterable[str]) -> list[str]:
        return order_models(models, self.ir_precisions)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, run_dir: str | Path) -> Path:
        return write_json(Path(run_dir) / SUMMARY, self.to_json())

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunSummary":
        """The summary in ``d`` (format 1 upgraded); :class:`InvalidSummary` (a ValueError) names a key whose
        value has the wrong type, is missing or unknown."""
        if not isinstance(d, dict):
            raise InvalidSummary(f"expected a JSON object, got {_json_kind(d)}")
        d = dict(d)
        fmt = d.setdefault("format", 1)
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt > SUMMARY_FORMAT:
            raise InvalidSummary(f"format {fmt!r} is newer than this ssh-toolkit reads ({SUMMARY_FORMAT})")
        _check_summary(d)
        if fmt == 1:  # older vocabulary
            if d.get("weights") == "stand-in":
                d["weights"] = "standin"
            d["box_match"] = {m: {("box_match_rate" if k == "match_rate" else k): v for k, v in s.items()}
                              for m, s in d.pop("detection_parity", {}).items()}
            d["format"] = SUMMARY_FORMAT
        d["parity"] = {m: {o: OutputParity.from_json(s) for o, s in outs.items()}
                       for m, outs in d.get("parity", {}).items()}
        d["box_match"] = {m: BoxMatch(**s) for m, s in d.get("box_match", {}).items()}
        return cls(**d)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunSummary":
        run_dir = Path(run_dir)
        path = run_dir / SUMMARY
        if not run_dir.is_dir():
            raise InputDataError(f"{run_dir}: run folder not found")
        if not path.is_file():
            raise InputDataError(f"{path}: missing; is {run_dir} a folder written by 'ssh-toolkit evaluate'?")
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8-sig")))  # a BOM is no error
        except InvalidSummary as e:
            raise InputDataError(f"{path}: not a valid run summary: {e}") from None
        except (ValueError, TypeError, KeyError) as e:
            raise InputDataError(f"{path}: not a valid run summary ({e})") from None


class InvalidSummary(ValueError):
    """A summary.json whose content does not have the shape of a :class:`RunSummary`; the message names the key."""


def _json_kind(v: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(v), repr(v))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)  # NaN and infinities are numbers (judged later)


_EXPECTED = {  # the check and how to say what was expected
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (_is_int, "an integer"),
    "number": (_is_number, "a number"),
    "number|null": (lambda v: v is None or _is_number(v), "a number or null"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "object": (lambda v: isinstance(v, dict), "a JSON object"),
}
# Field types of summary.json (format 1 or 2; format-1 names included), per record.
_SUMMARY_FIELDS = {
    "run_id": "str", "model": "str", "map": "object", "n_images": "int", "input_size": "int", "protocol": "str",
    "protocol_params": "object", "weights": "str", "checkpoint_kind": "str", "note": "str", "reference_map": "number",
    "dataset": "object", "precisions": "object", "parity": "object", "box_match": "object", "official": "object",
    "card_sha256": "str", "versions": "object", "created": "str", "format": "int", "runtime": "object",
    "detection_parity": "object",
}
_SUMMARY_REQUIRED = ("run_id", "model", "map", "n_images", "input_size", "protocol", "protocol_params", "weights",
                     "checkpoint_kind", "note", "reference_map", "dataset", "precisions")
_PARITY_FIELDS = {"max_abs": "number", "min_passing_atol": "number", "atol": "number|null", "cosine": "number",
                  "min_cosine": "number|null", "passed": "bool", "reason": "str", "rtol": "number|null", "problem": "str"}
_PARITY_REQUIRED = ("max_abs", "min_passing_atol", "atol", "cosine", "min_cosine", "passed")
_BOX_MATCH_FIELDS = {"n_ref": "int", "n_test": "int", "matched": "int", "box_match_rate": "number",
                     "match_rate": "number", "only_ref": "int", "only_test": "int", "mean_abs_score_diff": "number",
                     "max_abs_score_diff": "number", "min_score": "number", "iou": "number"}


def _check_record(d: Any, key: str, fields: dict[str, str], required: Sequence[str]) -> None:
    """``d`` is a JSON object holding ``required`` and no key outside ``fields``, each of its type."""
    if not isinstance(d, dict):
        raise InvalidSummary(f"key '{key}': expected a JSON object, got {d!r}")
    prefix = f"{key}." if key else ""
    for k in required:
        if k not in d:
            raise InvalidSummary(f"key '{prefix}{k}': missing")
    for k, v in d.items():
        if k not in fields:
            raise InvalidSummary(f"key '{prefix}{k}': unknown key")
        ok, what = _EXPECTED[fields[k]]
        if not ok(v):
            raise InvalidSummary(f"key '{prefix}{k}': expected {what}, got {v!r}")


def _check_map_of(d: dict[str, Any], key: str, kind: str) -> None:
    ok, what = _EXPECTED[kind]
    for k, v in d.items():
        if not ok(v):
            raise InvalidSummary(f"key '{key}.{k}': expected {what}, got {v!r}")


def _check_summary(d: dict[str, Any]) -> None:
    """Every key of a summary.json has the type the readers (gate, reports) rely on; else InvalidSummary."""
    _check_record(d, "", _SUMMARY_FIELDS, _SUMMARY_REQUIRED)
    if d["n_images"] < 0:
        raise InvalidSummary(f"key 'n_images': expected a count >= 0, got {d['n_images']!r}")
    if d["input_size"] <= 0:
        raise InvalidSummary(f"key 'input_size': expected a positive integer, got {d['input_size']!r}")
    _check_map_of(d["map"], "map", "number")
    _check_map_of(d["precisions"], "precisions", "str")
    for model, outs in d.get("parity", {}).items():
        if not isinstance(outs, dict):
            raise InvalidSummary(f"key 'parity.{model}': expected a JSON object, got {outs!r}")
        for out, s in outs.items():
            _check_record(s, f"parity.{model}.{out}", _PARITY_FIELDS, _PARITY_REQUIRED)
    for group, rate in (("box_match", "box_match_rate"), ("detection_parity", "match_rate")):
        required = [k for k in _BOX_MATCH_FIELDS if k not in ("box_match_rate", "match_rate")] + [rate]
        for model, s in d.get(group, {}).items():
            _check_record(s, f"{group}.{model}", _BOX_MATCH_FIELDS, required)
    for model, aps in d.get("official", {}).items():
        if not isinstance(aps, dict):
            raise InvalidSummary(f"key 'official.{model}': expected a JSON object, got {aps!r}")
        _check_map_of(aps, f"official.{model}", "number")
