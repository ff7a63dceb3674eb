"""Evaluation on a WIDER-layout dataset: every model through the identical pipeline, cached and resumable.

Phases:
1. dataset: parse, select (limit / shard / subset), check every image exists *before* any inference,
   hash every image file (the cache key).
2. inference, per model: MXNet batch 1 (the reference); OpenVINO through an async infer queue, so image
   decoding/resizing (the feeding iterator), inference and output decoding (the callback) overlap. Each image's
   raw outputs are written to the cache as soon as they exist, keyed by model hash + input size + image hash,
   so an interrupted run resumes where it stopped and a re-run re-scores without re-inferring.
3. scoring, from the cache: decode under the card's protocol (so a protocol change never needs inference),
   mAP per model, numeric parity and detection parity of each IR against MXNet.
4. records: a RunSummary and pandas tables, written as one run folder (atomically).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from .cache import CACHE_VERSION, RawCache, image_keys
from .card import ModelCard
from .convert import ConvertedModel
from .data.wider import WiderDataset, open_wider, read_image
from .errors import InputDataError, UsageError
from .fileio import atomic_dir, check_replaceable, sha256_file
from .metric.average_precision import EvalResult, MapAccumulator
from .metric.box_match import DetectionParityAccumulator
from .metric.parity import ParityAccumulator, ParityResult
from .model.decode import decode
from .model.detections import Detections
from .model.outputs import RawOutputs
from .model.preprocess import resize, to_tensor
from .run_record import REFERENCE_MODEL, OutputParity, RunSummary, default_run_dir
from .runners.base import Runner
from .runners.mxnet import MXNetRunner
from .runners.openvino import PARITY_CONFIG, OpenVINORunner
from .workspace import Checkpoint, Workspace

# Over a dataset, run several infer requests in parallel streams (benchmark_app's default); f32 stays pinned.
# With the default latency hint OpenVINO compiles one stream and the async queue runs one request at a time.
DATASET_CONFIG = {**PARITY_CONFIG, "PERFORMANCE_HINT": "THROUGHPUT"}


@dataclass(frozen=True)
class ModelUnderTest:
    name: str  # mxnet | ir-fp32 | ir-fp16
    precision: str
    key: str  # identifies weights + graph + input size: the cache folder
    side: str  # which preprocessing of the card: "mxnet" or "ir"
    make_runner: Callable[[], Runner] = field(repr=False, compare=False)

    @property
    def is_openvino(self) -> bool:
        return self.side == "ir"


def model_set(card: ModelCard, checkpoint: Checkpoint, irs: Sequence[ConvertedModel], input_size: int,
              names: Sequence[str] | None = None) -> list[ModelUnderTest]:
    """MXNet plus every IR, narrowed to ``names``; an unknown or unavailable name is a usage error."""
    outs = card.output_names

    def cache_key(*parts: object) -> str:
        # Everything that shapes the raw outputs: the model files as they are now (not as recorded, so an edited
        # file never hits the cache), the input size, the shared resize and the side's own preprocessing, the
        # runtime config (another stream/thread split may change the last bits) and the cache format.
        text = "|".join(map(str, (CACHE_VERSION, input_size, card.resize_interpolation, *parts)))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    mx_key = cache_key("mxnet", sha256_file(checkpoint.params_path), sha256_file(checkpoint.symbol_path),
                       card.preprocess["mxnet"])
    models = [ModelUnderTest(REFERENCE_MODEL, "FP32", f"mxnet-{mx_key}", "mxnet",
                             lambda: MXNetRunner(checkpoint, card.input.name, input_size, outs))]
    for ir in irs:
        if ir.input_size != input_size:
            raise UsageError(f"{ir.xml}: converted at input size {ir.input_size}, evaluating at {input_size}")
        key = cache_key("ir", sha256_file(ir.xml), sha256_file(ir.bin), card.preprocess["ir"],
                        sorted(DATASET_CONFIG.items()))
        models.append(ModelUnderTest(ir.model_name, ir.precision, f"{ir.model_name}-{key}", "ir",
                                     lambda ir=ir: OpenVINORunner(ir.xml, outs, name=ir.model_name,
                                                                  config=DATASET_CONFIG)))
    if names:
        available = {m.name: m for m in models}
        unknown = [n for n in names if n not in available]
        if unknown:
            raise UsageError(f"--model {unknown[0]} is not available; available: {', '.join(available)} "
                             f"(run 'ssh-toolkit convert' for missing IRs)")
        models = [available[n] for n in dict.fromkeys(names)]
    return models


# ------------------------------------------------------------------------------------------------------------
# Inference


def _feed(card: ModelCard, model: ModelUnderTest, ds: WiderDataset, todo: Sequence[int], size: int):
    side = card.preprocess[model.side]
    for i in todo:
        image = read_image(ds.image_path(ds.images[i]))
        yield i, image.shape[:2], to_tensor(resize(image, size).image, side)


def infer_missing(card: ModelCard, model: ModelUnderTest, ds: WiderDataset, keys: Sequence[str], cache: RawCache,
                  size: int, *, progress: bool = True, jobs: int = 0) -> int:
    """Infer every image without a cache entry; returns how many were inferred."""
    todo = [i for i, k in enumerate(keys) if not cache.has(k)]
    if not todo:
        return 0
    bar = tqdm(total=len(todo), desc=f"infer {model.name}", unit="img", disable=not progress)
    runner = model.make_runner()
    with runner:
        if isinstance(runner, OpenVINORunner):
            hw_of: dict[int, tuple[int, int]] = {}

            def items():
                for i, hw, tensor in _feed(card, model, ds, todo, size):
                    hw_of[i] = hw
                    yield i, tensor

            def done(i, raw: RawOutputs) -> None:
                cache.put(keys[i], raw, hw_of.pop(i))
                bar.update(1)

            runner.infer_async(items(), done, jobs=jobs)
        else:
            for i, hw, tensor in _feed(card, model, ds, todo, size):
                cache.put(keys[i], runner.infer(tensor), hw)
                bar.update(1)
    bar.close()
    return len(todo)


# ------------------------------------------------------------------------------------------------------------
# Scoring


@dataclass
class ModelScore:
    model: ModelUnderTest
    result: EvalResult
    detections: list[Detections]
    seconds: np.ndarray  # per image, inference latency as recorded


def score_model(card: ModelCard, model: ModelUnderTest, ds: WiderDataset, keys: Sequence[str],
                cache: RawCache, size: int) -> ModelScore:
    acc = MapAccumulator(card.protocol)
    dets, secs = [], []
    for im, k in zip(ds.images, keys):
        raw, (h, w) = cache.get(k, model.name)
        d = decode(raw.arrays, card, size / w, size / h)
        acc.update(im.identifier, d, im.boxes)
        dets.append(d)
        secs.append(raw.seconds)
    return ModelScore(model, acc.compute(), dets, np.asarray(secs))


def parity_of(card: ModelCard, ref: ModelScore, test: ModelScore, keys: Sequence[str], ref_cache: RawCache,
              test_cache: RawCache) -> tuple[ParityResult, DetectionParityAccumulator, ParityAccumulator]:
    num = ParityAccumulator(card, test.model.precision, ref.model.name, test.model.name)
    dp = card.detection_parity
    det = DetectionParityAccumulator(dp.min_score, dp.iou)
    for k, rd, td in zip(keys, ref.detections, test.detections):
        num.update(ref_cache.get(k, ref.model.name)[0], test_cache.get(k, test.model.name)[0])
        det.update(rd, td)
    return num.result(), det, num


# ------------------------------------------------------------------------------------------------------------
# The whole evaluation


@dataclass
class Evaluation:
    run_dir: Path
    summary: RunSummary
    scores: list[ModelScore]
    parity: list[ParityResult]
    inferred: dict[str, int]  # model -> images inferred in this call (0 = all from cache)


def _pr_frame(scores: Sequence[ModelScore], max_points: int = 2000):
    import pandas as pd

    frames = []
    for s in scores:
        r = s.result
        rec, prec = r.recall, r.precision
        if len(rec) > max_points:  # keep the envelope's corners: the first (highest-precision) point of each recall
            first = np.flatnonzero(np.diff(rec, prepend=-np.inf) != 0)
            idx = first if len(first) <= max_points else first[np.linspace(0, len(first) - 1, max_points).astype(int)]
            rec, prec = rec[idx], prec[idx]
        frames.append(pd.DataFrame({"model": s.model.name, "recall": rec, "precision": prec}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["model", "recall", "precision"])


def _hist_frame(model: str, acc: ParityAccumulator):
    import pandas as pd

    rows = []
    for name, a in acc.acc.items():
        edges, counts = a.histogram()
        rows.append(pd.DataFrame({"model": model, "output": name, "upper_edge": edges, "count": counts}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def evaluate(card: ModelCard, checkpoint: Checkpoint, irs: Sequence[ConvertedModel], data_root: str | Path,
             workspace: Workspace, *, models: Sequence[str] | None = None, input_size: int | None = None,
             limit: int | None = None, shard: tuple[int, int] | None = None, subset: Sequence[str] | None = None,
             skip_missing: bool = False, run_dir: str | Path | None = None, progress: bool = True,
             jobs: int = 0, official_gt: str | Path | None = None) -> Evaluation:
    """Evaluate MXNet and the IRs on a WIDER-layout dataset; write the run folder; return the records."""
    from .report.markdown import evaluation_markdown, run_metadata, write_report

    size = input_size or card.input.size
    run_dir = Path(run_dir) if run_dir else default_run_dir(f"{checkpoint.kind}-{size}")
    check_replaceable(run_dir)  # before hours of inference, not after
    selected = model_set(card, checkpoint, irs, size, models)
    ds = open_wider(data_root)
    ds = ds.select(limit=limit, shard=shard, subset=subset)
    present, missing = ds.check_images(skip_missing=skip_missing)
    if missing:
        if not present:
            raise InputDataError(f"{ds.images_dir}: none of the {len(missing)} selected images exists")
        ds = replace(ds, images=present, selection=f"{ds.selection}, {len(missing)} missing skipped")
    paths = [ds.image_path(im) for im in ds.images]
    official_truth = None
    if official_gt is not None:  # read before inference: a bad file should not cost hours first
        from .metric.wider_official import load_official_ground_truth

        official_truth = load_official_ground_truth(official_gt).subset(ds.identifiers)
    keys = image_keys(paths, progress)

    caches = {m.name: RawCache(workspace.cache, m.key) for m in selected}
    inferred = {}
    for m in selected:
        start = time.perf_counter()
        inferred[m.name] = infer_missing(card, m, ds, keys, caches[m.name], size, progress=progress, jobs=jobs)
        if progress and inferred[m.name]:
            took = time.perf_counter() - start
            tqdm.write(f"{m.name}: {inferred[m.name]} images in {took:.1f} s "
                       f"({inferred[m.name] / took:.2f} img/s)")

    scores = [score_model(card, m, ds, keys, caches[m.name], size) for m in selected]
    by_name = {s.model.name: s for s in scores}
    parity: list[ParityResult] = []
    det_parity, hist_frames = {}, []
    if REFERENCE_MODEL in by_name:
        ref = by_name[REFERENCE_MODEL]
        for s in scores:
            if s.model.is_openvino:
                num, det, acc = parity_of(card, ref, s, keys, caches[REFERENCE_MODEL], caches[s.model.name])
                parity.append(num)
                det_parity[s.model.name] = det.result()
                hist_frames.append(_hist_frame(s.model.name, acc))

    official = {}
    if official_truth is not None:
        official = {s.model.name: official_truth.evaluate(dict(zip(ds.identifiers, s.detections))) for s in scores}

    meta = run_metadata(card, checkpoint.weights, checkpoint.kind)
    summary = RunSummary(
        run_id=run_dir.name, model=card.name,
        map={s.model.name: s.result.map_percent for s in scores},
        n_images=len(ds.images), input_size=size, protocol=card.protocol.name,
        protocol_params=card.protocol.as_dict(), weights=checkpoint.weights, checkpoint_kind=checkpoint.kind,
        note=meta["note"], reference_map=card.reference_map,
        dataset={"root": str(Path(data_root)), "split": ds.split, "n_images": len(ds.images),
                 "selection": ds.selection, "skipped": [im.identifier for im in missing],
                 "identifiers_sha256": hashlib.sha256("\n".join(ds.identifiers).encode()).hexdigest(),
                 "annotations_sha256": _annotations_sha256(ds),
                 "images_sha256": hashlib.sha256("\n".join(keys).encode()).hexdigest()},
        precisions={s.model.name: s.model.precision for s in scores},
        parity={p.test: {d.name: OutputParity(d.max_abs, d.min_passing_atol, d.tolerance.atol, d.cosine,
                                              d.tolerance.min_cosine, d.passed,
                                              d.problem) for d in p.diffs} for p in parity},
        detection_parity=det_parity, official=official, card_sha256=meta["card_sha256"], versions=meta["versions"],
        created=meta["created"],
    )
    tables = _tables(scores, parity, det_parity, hist_frames)
    if official:
        import pandas as pd

        tables["official"] = pd.DataFrame([{"model": m, "setting": k, "ap": v}
                                           for m, aps in official.items() for k, v in aps.items()])
    with atomic_dir(run_dir) as tmp:
        summary.save(tmp)
        write_report(tmp, tables, {**meta, "run_id": run_dir.name, "command": "evaluate",
                                   "checkpoint": checkpoint.to_json(),
                                   "irs": [ir.to_json() for ir in irs if ir.model_name in by_name]},
                     evaluation_markdown(summary, tables))
    return Evaluation(run_dir, summary, scores, parity, inferred)


def _annotations_sha256(ds: WiderDataset) -> str:
    h = hashlib.sha256()
    for im in ds.images:
        h.update(im.identifier.encode())
        h.update(np.ascontiguousarray(im.boxes, np.float64).tobytes())
    return h.hexdigest()


def _tables(scores: Sequence[ModelScore], parity: Sequence[ParityResult], det_parity: dict, hist_frames: list):
    import pandas as pd

    metrics = pd.DataFrame([{
        "model": s.model.name, "precision": s.model.precision, "map_percent": s.result.map_percent,
        "ap": s.result.ap, "n_images": s.result.n_images, "n_gt": s.result.n_gt, "n_pos": s.result.n_pos,
        "n_detections": s.result.n_detections, "n_tp": s.result.n_tp, "n_fp": s.result.n_fp,
        "mean_latency_s": float(s.seconds.mean()) if len(s.seconds) else 0.0,
    } for s in scores])
    per_image = pd.concat([pd.DataFrame({
        "model": s.model.name, "image": list(s.result.image_ids), "n_gt": s.result.gt_per_image,
        "n_pos": s.result.pos_per_image, "n_detections": [len(d) for d in s.detections],
        "n_tp": s.result.tp_per_image, "n_fp": s.result.fp_per_image, "n_ignored": s.result.ignored_per_image,
        "max_score": [float(d.scores.max()) if len(d) else 0.0 for d in s.detections],
        "seconds": s.seconds,
    }) for s in scores], ignore_index=True)
    tables = {"metrics": metrics, "per_image": per_image, "pr_curves": _pr_frame(scores)}
    if parity:
        tables["parity"] = pd.concat([p.to_frame() for p in parity], ignore_index=True)
        tables["parity_histograms"] = pd.concat(hist_frames, ignore_index=True)
        tables["detection_parity"] = pd.DataFrame([{"model": m, **d.__dict__} for m, d in det_parity.items()])
    return tables


def load_irs(card: ModelCard, checkpoint: Checkpoint, workspace: Workspace, size: int,
             precisions: Sequence[str] | None = None) -> list[ConvertedModel]:
    """The converted IRs available for this checkpoint and size (those not converted are left out)."""
    irs = []
    for p in precisions or card.precisions:
        directory = workspace.ir_dir(checkpoint.kind, size, p)
        if (directory / "conversion.json").is_file():
            irs.append(ConvertedModel.load(directory))
    return irs

