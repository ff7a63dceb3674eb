"""The structured record of an evaluation run: ``reports/runs/<run-id>/summary.json`` and its tables.

Gates and reports read runs only through this module (never by scraping logs or Markdown).

A run folder holds:
    summary.json            RunSummary (below)
    metrics.csv/.json       one row per model: model, precision, map_percent, ap, n_images, n_gt, n_pos,
                            n_detections, n_tp, n_fp, mean_latency_s
    per_image.csv/.json     one row per model and image: model, image, n_gt, n_pos, n_detections, n_tp, n_fp,
                            n_ignored, max_score, seconds
    pr_curves.csv/.json     model, recall, precision (at most ~2000 points per model, envelope-preserving)
    parity.csv/.json        numeric output diffs MXNet vs each IR over the dataset (compare.ParityResult.to_frame)
    parity_histograms.csv   model, output, upper_edge, count: |diff| histogram per output (log-spaced bins)
    official.csv            model, setting, ap: official WIDER Easy/Medium/Hard AP (only with --official-gt)
    detection_parity.csv    model, n_ref, n_test, matched, match_rate, only_ref, only_test, mean/max |score diff|
    report.md               what a person reads first
    report.html             the same with plots (ssh-toolkit report)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from .errors import InputDataError
from .fileio import write_json

SUMMARY = "summary.json"
REFERENCE_MODEL = "mxnet"  # the original model every IR is compared with


def default_run_dir(what: str) -> Path:
    """Reserve ``reports/runs/<YYYYmmdd-HHMMSS>-<what>`` (``-2``, ``-3``, ... when taken) and return it.

    The folder is created empty and exclusively, so runs started in the same second, in any number of
    processes, never share one. If it is still empty when the process exits (the run failed or was
    interrupted before writing it), it is removed again.
    """
    import atexit
    import os
    from datetime import datetime

    runs = Path("reports") / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    stem = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{what}"
    n = 1
    while True:
        path = runs / (stem if n == 1 else f"{stem}-{n}")
        try:
            os.mkdir(path)
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
    """Remove the folders :func:`default_run_dir` reserved that are still empty; runs at exit."""
    import os

    removed = []
    while _reserved:
        path = _reserved.pop()
        try:
            os.rmdir(path)  # fails, as it should, once the run was written there
        except OSError:
            continue
        removed.append(path)
    return removed


def ir_model_name(precision: str) -> str:
    """``FP32`` -> ``ir-fp32``: how runs, tables and gate rules name an IR."""
    return f"ir-{precision.lower()}"


def order_models(models: Iterable[str], precisions: Sequence[str] = ("FP32", "FP16")) -> list[str]:
    """MXNet first, then the IRs in precision order, then anything else sorted; duplicates dropped."""
    models = list(dict.fromkeys(models))
    order = [REFERENCE_MODEL, *(ir_model_name(p) for p in precisions)]
    return [m for m in order if m in models] + sorted(m for m in models if m not in order)


@dataclass(frozen=True)
class OutputParity:
    max_abs: float
    min_passing_atol: float
    atol: float
    cosine: float
    min_cosine: float
    passed: bool
    problem: str = ""  # a shape mismatch or non-finite values, when there is one


@dataclass(frozen=True)
class DetectionParity:
    n_ref: int  # MXNet detections with score >= min_score
    n_test: int
    matched: int  # reference detections with a test detection at IoU >= iou
    match_rate: float  # matched / n_ref (1.0 when n_ref == 0)
    only_ref: int
    only_test: int
    mean_abs_score_diff: float
    max_abs_score_diff: float
    min_score: float
    iou: float


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    model: str  # the card's name, e.g. ssh-mxnet
    map: dict[str, float]  # model name (mxnet, ir-fp32, ir-fp16) -> mAP in percent
    n_images: int
    input_size: int
    protocol: str
    protocol_params: dict[str, Any]
    weights: str  # "real" | "stand-in"
    checkpoint_kind: str  # real | standin | toy
    note: str  # the stand-in banner
    reference_map: float
    dataset: dict[str, Any]  # root, split, n_images, selection, skipped, identifiers/annotations/images_sha256
    precisions: dict[str, str]  # model name -> precision ("FP32" for mxnet)
    parity: dict[str, dict[str, OutputParity]] = field(default_factory=dict)  # IR model -> output -> stats
    detection_parity: dict[str, DetectionParity] = field(default_factory=dict)
    # model -> {easy, medium, hard}: the official WIDER FACE AP, only with --official-gt. NOT comparable with map.
    official: dict[str, dict[str, float]] = field(default_factory=dict)
    card_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, run_dir: str | Path) -> Path:
        return write_json(Path(run_dir) / SUMMARY, self.to_json())

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunSummary":
        d = dict(d)
        d["parity"] = {m: {o: OutputParity(**s) for o, s in outs.items()} for m, outs in d.get("parity", {}).items()}
        d["detection_parity"] = {m: DetectionParity(**s) for m, s in d.get("detection_parity", {}).items()}
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
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError, KeyError) as e:
            raise InputDataError(f"{path}: not a valid run summary ({e})") from None
