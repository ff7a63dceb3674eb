"""Exact merging of shard runs: ``ssh-toolkit merge RUN_DIR... --out DIR``.

mAP cannot be averaged over shards (every detection of every image is ranked together), and the parity
figures are float sums whose bits depend on the order of addition. So each run folder of ``evaluate`` also
holds ``detections.npz``: per image (in dataset order) its identifier, its position in the selection before
``--shard`` (``p % N == K - 1``), its content hash and ground truth, every model's detections and inference
seconds; and per IR and output the numeric-parity state in joinable form: per image the value count and the
float sums, per run the extremes (max, min) and the histogram counts. ``merge`` puts the images of disjoint
shards back in position order and replays exactly what one run over the union does, so its mAP, parity, box
match rate, tables and report equal that run's (every summary.json field but ``run_id`` and ``created``).

Runs that differ in anything that shapes the result (card, models and their cache keys, dataset, selection
before sharding, input size, protocol, runtime, versions) or that share images are refused (exit 2) naming
what differs.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .card import ModelCard
from .errors import InputDataError, UsageError
from .metric.parity import DiffAccumulator, ParityAccumulator

RECORDS = "detections.npz"
RECORDS_FORMAT = 1
_SEP = "::"


def shard_positions(n_images: int, shard: tuple[int, int] | None) -> list[int]:
    """The positions, in the selection before sharding, of the first ``n_images`` images of ``shard``."""
    k, n = shard or (1, 1)
    return [(k - 1) + n * j for j in range(n_images)]


# ------------------------------------------------------------------------------------------------ writing
def write_records(folder: Path, *, meta: Mapping[str, Any], ids: Sequence[str], positions: Sequence[int],
                  image_keys: Sequence[str], gt: Sequence[np.ndarray], skipped: Sequence[tuple[str, int]],
                  detections: Mapping[str, Sequence], seconds: Mapping[str, np.ndarray],
                  parity: Mapping[str, ParityAccumulator]) -> Path:
    """``folder/detections.npz``; ``detections[model]`` holds one Detections per image, ``parity[ir]`` the
    accumulator that recorded its rows (``ParityAccumulator(record=True)``), its images in ``ids`` order."""
    pos = np.asarray(positions, np.int64)
    arrays: dict[str, np.ndarray] = {
        "ids": np.asarray(list(ids), dtype=str), "positions": pos,
        "image_sha256": np.asarray(list(image_keys), dtype=str),
        "gt_counts": np.asarray([len(b) for b in gt], np.int64),
        "gt_boxes": np.concatenate([np.asarray(b, np.float64).reshape(-1, 4) for b in gt]) if gt
        else np.zeros((0, 4)),
        "skipped_ids": np.asarray([s for s, _ in skipped], dtype=str),
        "skipped_positions": np.asarray([p for _, p in skipped], np.int64),
    }
    for m, dets in detections.items():
        arrays[f"det{_SEP}{m}{_SEP}counts"] = np.asarray([len(d) for d in dets], np.int64)
        arrays[f"det{_SEP}{m}{_SEP}boxes"] = (np.concatenate([d.boxes for d in dets]) if dets else np.zeros((0, 4)))
        arrays[f"det{_SEP}{m}{_SEP}scores"] = (np.concatenate([d.scores for d in dets]) if dets
                                               else np.zeros(0, np.float32))
        arrays[f"seconds{_SEP}{m}"] = np.asarray(seconds[m], np.float64)
    problems = {}
    for ir, acc in parity.items():
        for o, a in acc.acc.items():
            base = f"parity{_SEP}{ir}{_SEP}{o}{_SEP}"
            rows = np.asarray(a.rows, np.float64).reshape(-1, 2 + len(DiffAccumulator.SUMS))
            arrays[base + "positions"] = pos[rows[:, 0].astype(np.int64)] if len(rows) else np.zeros(0, np.int64)
            arrays[base + "n"] = rows[:, 1].astype(np.int64)
            arrays[base + "sums"] = rows[:, 2:]
            arrays[base + "extremes"] = a.extremes()
            arrays[base + "hist"] = a.hist
            arrays[base + "shape"] = np.asarray(a.shape if a.shape is not None else [-1], np.int64)
            if a.problem:
                problems[f"{ir}/{o}"] = a.problem
        arrays[f"parity{_SEP}{ir}{_SEP}n_images"] = np.asarray(acc.n_images, np.int64)
    full_meta = {"format": RECORDS_FORMAT, **meta, "parity_problems": problems}
    arrays["meta"] = np.asarray(json.dumps(full_meta, sort_keys=True))
    path = folder / RECORDS
    np.savez_compressed(path, **arrays)
    return path


# ------------------------------------------------------------------------------------------------ reading
@dataclass
class ShardRun:
    folder: Path
    summary: Any  # RunSummary
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray]

    @property
    def positions(self) -> np.ndarray:
        return self.arrays["positions"]


def load_shard(folder: Path) -> ShardRun:
    from .run_record import RunSummary

    summary = RunSummary.load(folder)
    path = Path(folder) / RECORDS
    if not path.is_file():
        raise InputDataError(f"{path}: missing; this run folder was written before 'merge' existed or by another "
                             f"command; evaluate the shard again")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as e:
        raise InputDataError(f"{path}: not a valid per-image record ({type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise InputDataError(f"{path}: not a valid per-image record (its metadata is not a JSON object)")
    if meta.get("format") != RECORDS_FORMAT:
        raise InputDataError(f"{path}: record format {meta.get('format')!r}, this ssh-toolkit reads {RECORDS_FORMAT}")
    problem = _record_problem(meta, arrays, summary)
    if problem:
        raise InputDataError(f"{path}: not a valid per-image record ({problem})")
    return ShardRun(Path(folder), summary, meta, arrays)


def _record_problem(meta: dict, arrays: Mapping[str, np.ndarray], summary) -> str:
    """What makes a loaded record unusable by :func:`merge_runs` (a key missing, of the wrong type, or arrays
    whose lengths disagree), or ""."""
    from .run_record import REFERENCE_MODEL

    kinds = {"models": dict, "base_selection": str, "shards": list, "n_shards": int, "checkpoint": dict,
             "irs": list, "parity_problems": dict}
    for k, kind in kinds.items():
        if not isinstance(meta.get(k), kind) or isinstance(meta.get(k), bool):
            return f"metadata key {k!r} missing or not a {kind.__name__}"
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in meta["shards"]):
        return "metadata key 'shards' is not a list of integers"

    def arr(key: str, dims: int, kind: str, length: int | None = None, width: int | None = None) -> np.ndarray:
        a = arrays.get(key)
        if a is None:
            raise _Bad(f"array {key!r} missing")
        if a.ndim != dims or a.dtype.kind not in kind:
            raise _Bad(f"array {key!r} has shape {a.shape} and type {a.dtype}")
        if (length is not None and len(a) != length) or (width is not None and a.shape[1] != width):
            raise _Bad(f"array {key!r} has shape {a.shape}, expected ({length}{', ' + str(width) if width else ''})")
        return a

    try:
        n = len(arr("ids", 1, "U"))
        arr("positions", 1, "i", n)
        arr("image_sha256", 1, "U", n)
        gt = arr("gt_counts", 1, "i", n)
        if (gt < 0).any():
            raise _Bad("array 'gt_counts' holds a negative count")
        arr("gt_boxes", 2, "f", int(gt.sum()), 4)
        arr("skipped_positions", 1, "i", len(arr("skipped_ids", 1, "U")))
        for m in summary.map:
            counts = arr(f"det{_SEP}{m}{_SEP}counts", 1, "i", n)
            if (counts < 0).any():
                raise _Bad(f"array 'det{_SEP}{m}{_SEP}counts' holds a negative count")
            arr(f"det{_SEP}{m}{_SEP}boxes", 2, "f", int(counts.sum()), 4)
            arr(f"det{_SEP}{m}{_SEP}scores", 1, "f", int(counts.sum()))
            arr(f"seconds{_SEP}{m}", 1, "f", n)
        if REFERENCE_MODEL in summary.map:
            for ir in (m for m in summary.map if m != REFERENCE_MODEL):
                arr(f"parity{_SEP}{ir}{_SEP}n_images", 0, "i")
                outputs = summary.parity.get(ir, {})
                if not outputs:
                    raise _Bad(f"no parity of {ir} in summary.json")
                for o in outputs:
                    base = f"parity{_SEP}{ir}{_SEP}{o}{_SEP}"
                    k = len(arr(base + "positions", 1, "i"))
                    arr(base + "n", 1, "i", k)
                    arr(base + "sums", 2, "f", k, len(DiffAccumulator.SUMS))
                    arr(base + "extremes", 1, "f", len(DiffAccumulator.EXTREMES))
                    arr(base + "hist", 1, "i", len(DiffAccumulator(o, 0.0).hist))
                    arr(base + "shape", 1, "i")
    except _Bad as e:
        return str(e)
    return ""


class _Bad(Exception):
    pass


# ------------------------------------------------------------------------------------------------ checks
# What must be equal in every run to merge them: summary fields, dataset fields and record metadata.
_SAME_SUMMARY = ("model", "card_sha256", "input_size", "protocol", "protocol_params", "weights", "checkpoint_kind",
                 "precisions", "versions", "runtime", "reference_map")
_SAME_DATASET = ("split",)  # and the root path, for records without the selection's identity (base_identity)
# (Not the IRs' conversion records: they name each machine's paths and durations; the models' cache keys hash
# the IR files themselves.)
# The selection before --shard is identified by its image identifiers and ground truth (base_identity), not by
# the dataset's path: shards may read copies of the dataset at other paths (a node's local disk), and one path may
# hold another version of the annotations by the time the next shard runs.
_SAME_META = ("models", "base_selection", "base_identity", "n_shards", "limit", "checkpoint")


def check_mergeable(runs: Sequence[ShardRun], card: ModelCard) -> None:
    """UsageError naming the first difference between runs, or the runs sharing images."""
    from .fileio import sha256_file

    first = runs[0]
    for r in runs[1:]:
        for key in _SAME_SUMMARY:
            a, b = getattr(first.summary, key), getattr(r.summary, key)
            if a != b:
                what = {"precisions": "models", "card_sha256": "card (sha256)", "runtime": "runtime (device, CPU)"
                        }.get(key, key)
                raise UsageError(f"{r.folder}: not mergeable with {first.folder}: {what} differs ({_short(b)} vs "
                                 f"{_short(a)})")
        same_dataset = _SAME_DATASET if first.meta.get("base_identity") and r.meta.get("base_identity") else (
            "root", *_SAME_DATASET)
        for key in same_dataset:
            a, b = first.summary.dataset.get(key), r.summary.dataset.get(key)
            if a != b:
                raise UsageError(f"{r.folder}: not mergeable with {first.folder}: dataset {key} differs ({b} vs {a})")
        for key in _SAME_META:
            a, b = first.meta.get(key), r.meta.get(key)
            if a != b:
                what = {"base_selection": "selection before --shard", "n_shards": "shard count N",
                        "base_identity": "dataset (the image identifiers or ground truth of the selection before "
                                         "--shard)",
                        "models": "models (weights, IR files or runtime configuration)"}.get(key, key)
                raise UsageError(f"{r.folder}: not mergeable with {first.folder}: {what} differs ({_short(b)} vs "
                                 f"{_short(a)})")
    for r in runs:
        if r.meta.get("limit") is not None:
            raise UsageError(f"{r.folder}: made with --limit {r.meta['limit']}; merge joins whole shards (evaluate "
                             f"--shard K/N without --limit)")
        if r.summary.official:
            raise UsageError(f"{r.folder}: holds the official WIDER AP (--official-gt), which merge does not join; "
                             f"evaluate the union with --official-gt instead")
    if sha256_file(card.path) != first.summary.card_sha256:
        raise UsageError(f"{card.path}: not the card these runs were made with (sha256 differs); pass that card "
                         f"with --pipeline")
    seen: dict[int, Path] = {}
    shards: dict[int, Path] = {}
    for r in runs:
        for k in r.meta["shards"]:
            if k in shards:
                raise UsageError(f"{r.folder}: overlaps {shards[k]}: both hold shard {k}/{r.meta['n_shards']}")
            shards[k] = r.folder
        for p in r.positions.tolist():
            if p in seen:
                raise UsageError(f"{r.folder}: overlaps {seen[p]}: both hold image position {p}")
            seen[p] = r.folder


def _quantized_irs(run: ShardRun, models: Sequence[str]) -> list:
    """The INT8 IRs of ``run`` (from the IR records it keeps) that are among ``models``."""
    from .card import QUANTIZED
    from .quantize import QuantizedModel
    from .run_record import ir_model_name

    out = []
    for d in run.meta.get("irs", []):
        if isinstance(d, dict) and d.get("precision") == QUANTIZED and ir_model_name(QUANTIZED) in models:
            try:
                where = Path(d.get("source", {}).get("directory", ".")).parent / QUANTIZED  # beside its FP32 IR
                out.append(QuantizedModel.from_json(d, where))
            except (TypeError, KeyError, ValueError) as e:
                raise InputDataError(f"{run.folder / RECORDS}: its INT8 IR record is not valid ({e})") from None
    return out


def _short(v: Any, limit: int = 120) -> str:
    text = json.dumps(v, sort_keys=True) if not isinstance(v, str) else v
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------------------------------------ merging
def merge_runs(card: ModelCard, run_dirs: Sequence[str | Path], out: str | Path, *, checked=None):
    """Merge the run folders of disjoint shards into ``out`` (written atomically, kind run); returns the
    :class:`~ssh_toolkit.evaluation.Evaluation` of the union."""
    from datetime import datetime, timezone

    from .evaluation import Evaluation, ModelScore, _hist_frame, _tables, identity_of
    from .fileio import atomic_dir, check_replaceable
    from .inference import ModelUnderTest
    from .metric.average_precision import MapAccumulator
    from .metric.box_match import BoxMatchAccumulator
    from .model.detections import Detections
    from .report.markdown import evaluation_markdown, write_report
    from .run_record import REFERENCE_MODEL, OutputParity, RunSummary

    if len(run_dirs) < 1:
        raise UsageError("merge needs at least one run folder")
    dirs = [Path(d) for d in run_dirs]
    dup = [d for i, d in enumerate(dirs) if d.resolve() in {x.resolve() for x in dirs[:i]}]
    if dup:
        raise UsageError(f"{dup[0]}: given twice")
    out = Path(out)
    if out.resolve() in {d.resolve() for d in dirs}:
        raise UsageError(f"{out}: is one of the run folders being merged; give --out another folder")
    if checked is None:
        checked = check_replaceable(out, "run")
    runs = [load_shard(d) for d in dirs]
    check_mergeable(runs, card)
    first = runs[0]

    # The union in position order: (run, index within the run) for each image.
    where = sorted((int(p), ri, i) for ri, r in enumerate(runs) for i, p in enumerate(r.positions.tolist()))
    positions = np.asarray([p for p, _, _ in where], np.int64)
    per_run_gt = [np.split(r.arrays["gt_boxes"], np.cumsum(r.arrays["gt_counts"])[:-1]) for r in runs]
    ids = [str(runs[ri].arrays["ids"][i]) for _, ri, i in where]
    image_keys = [str(runs[ri].arrays["image_sha256"][i]) for _, ri, i in where]
    gt = [per_run_gt[ri][i] for _, ri, i in where]

    def per_model(m: str) -> tuple[list[Detections], np.ndarray]:
        dets_of = []
        for r in runs:
            counts = r.arrays[f"det{_SEP}{m}{_SEP}counts"]
            cut = np.cumsum(counts)[:-1]
            boxes = np.split(r.arrays[f"det{_SEP}{m}{_SEP}boxes"], cut)
            scores = np.split(r.arrays[f"det{_SEP}{m}{_SEP}scores"], cut)
            dets_of.append([Detections(b, s) for b, s in zip(boxes, scores)])
        secs = np.asarray([runs[ri].arrays[f"seconds{_SEP}{m}"][i] for _, ri, i in where], np.float64)
        return [dets_of[ri][i] for _, ri, i in where], secs

    models = list(first.summary.map)
    keys = first.meta["models"]
    scores, dets = [], {}
    for m in models:
        d, secs = per_model(m)
        acc = MapAccumulator(card.protocol)
        for image_id, det, boxes in zip(ids, d, gt):
            acc.update(image_id, det, boxes)
        model = ModelUnderTest(m, first.summary.precisions[m], keys[m], "mxnet" if m == REFERENCE_MODEL else "ir",
                               make_runner=None)
        scores.append(ModelScore(model, acc.compute(), d, secs))
        dets[m] = d

    parity, parity_accs, box_match, hist_frames = [], {}, {}, []
    if REFERENCE_MODEL in dets:
        for s in scores:
            m = s.model.name
            if s.model.is_reference:
                continue
            acc = ParityAccumulator(card, s.model.precision, REFERENCE_MODEL, m, record=True)
            for o in list(acc.acc):
                base = f"parity{_SEP}{m}{_SEP}{o}{_SEP}"
                rows = np.concatenate([
                    np.column_stack([np.searchsorted(positions, r.arrays[base + "positions"]).astype(np.float64),
                                     r.arrays[base + "n"].astype(np.float64), r.arrays[base + "sums"]])
                    .reshape(-1, 2 + len(DiffAccumulator.SUMS)) for r in runs])
                shapes = {tuple(r.arrays[base + "shape"].tolist()) for r in runs} - {(-1,)}
                problems = [r.meta["parity_problems"].get(f"{m}/{o}", "") for r in sorted(
                    runs, key=lambda r: int(r.positions.min()) if len(r.positions) else 0)]
                joined = DiffAccumulator.join(o, acc.acc[o].rtol, rows, [r.arrays[base + "extremes"] for r in runs],
                                              [r.arrays[base + "hist"] for r in runs],
                                              shapes.pop() if len(shapes) == 1 else None,
                                              next((p for p in problems if p), ""))
                joined.rows = [(int(r[0]), int(r[1]), *map(float, r[2:])) for r in
                               rows[np.argsort(rows[:, 0], kind="stable")]] if len(rows) else []
                acc.acc[o] = joined
            acc.n_images = sum(int(r.arrays[f"parity{_SEP}{m}{_SEP}n_images"]) for r in runs)
            parity.append(acc.compute())
            parity_accs[m] = acc
            det = BoxMatchAccumulator(card.box_match.min_score, card.box_match.iou)
            for rd, td in zip(dets[REFERENCE_MODEL], s.detections):
                det.update(rd, td)
            box_match[m] = det.compute()
            hist_frames.append(_hist_frame(m, acc))

    skipped = sorted((int(p), str(s)) for r in runs for s, p in zip(r.arrays["skipped_ids"].tolist(),
                                                                    r.arrays["skipped_positions"].tolist()))
    n_shards = int(first.meta["n_shards"])
    shards = sorted(k for r in runs for k in r.meta["shards"])
    selection = first.meta["base_selection"]
    if shards != list(range(1, n_shards + 1)):
        part = f"shards {','.join(map(str, shards))}/{n_shards}"
        selection = part if selection == "all" else f"{selection}, {part}"
    if skipped:
        selection = f"{selection}, {len(skipped)} missing skipped"
    warnings_by_id = {k: v for r in runs for k, v in r.summary.dataset.get("image_warnings", {}).items()}
    image_warnings = {i: warnings_by_id[i] for i in ids if i in warnings_by_id}
    import hashlib

    fs = first.summary
    summary = RunSummary(
        run_id=out.name, model=fs.model, map={s.model.name: s.result.map_percent for s in scores},
        n_images=len(ids), input_size=fs.input_size, protocol=fs.protocol, protocol_params=fs.protocol_params,
        weights=fs.weights, checkpoint_kind=fs.checkpoint_kind, note=fs.note, reference_map=fs.reference_map,
        dataset={"root": fs.dataset["root"], "split": fs.dataset["split"], "n_images": len(ids),
                 "selection": selection, "skipped": [s for _, s in skipped], **identity_of(ids, gt),
                 "images_sha256": hashlib.sha256("\n".join(image_keys).encode()).hexdigest(),
                 "image_warnings": image_warnings},
        precisions=dict(fs.precisions),
        parity={p.test: {d.name: OutputParity.of(d) for d in p.diffs} for p in parity},
        box_match=box_match, official={}, card_sha256=fs.card_sha256, versions=dict(fs.versions),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"), runtime=dict(fs.runtime),
    )
    tables = _tables(scores, parity, box_match, hist_frames)
    if image_warnings:
        import pandas as pd

        tables["image_warnings"] = pd.DataFrame([{"image": k, "warning": v} for k, v in image_warnings.items()])
    if quantized := _quantized_irs(first, models):  # how the INT8 IR was made, as evaluate reports it
        from .evaluation import _quantization_frame

        tables["quantization"] = _quantization_frame(quantized, fs.dataset["root"])
    meta = {**{k: first.meta.get(k) for k in _SAME_META}, "irs": first.meta["irs"], "shards": shards}
    with atomic_dir(out, kind="run", checked=checked) as tmp:
        summary.save(tmp)
        write_report(tmp, tables, {"created": summary.created, "model": fs.model, "card": str(card.path),
                                   "card_sha256": fs.card_sha256, "weights": fs.weights,
                                   "checkpoint_kind": fs.checkpoint_kind, "note": fs.note, "versions": fs.versions,
                                   "run_id": out.name, "command": "merge",
                                   "merged": [str(d.resolve()) for d in dirs],
                                   "checkpoint": first.meta["checkpoint"], "irs": first.meta["irs"]},
                     evaluation_markdown(summary, tables))
        write_records(tmp, meta=meta, ids=ids, positions=positions, image_keys=image_keys, gt=gt,
                      skipped=[(s, p) for p, s in skipped], detections=dets,
                      seconds={s.model.name: s.seconds for s in scores}, parity=parity_accs)
    return Evaluation(out, summary, scores, parity, {m: 0 for m in models}, image_warnings)
