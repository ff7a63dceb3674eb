"""Evaluation on a WIDER-layout dataset: every model through the identical pipeline, cached and resumable.

Phases:
1. dataset: parse, select (limit / shard / subset), check every image exists *before* any inference,
   hash every image file (the cache key) and check it for damage the decoder would hide.
2. inference (``inference.run_models``, shared with ``compare``): every model through its runner's
   ``infer_many``, each image's raw outputs cached as soon as they exist, so an interrupted run resumes where it
   stopped and a re-run re-scores without re-inferring.
3. scoring, from the cache: decode under the card's protocol (so a protocol change never needs inference),
   mAP per model, numeric parity (verdict and reason per output) and box match rate of each IR against MXNet.
4. records: a RunSummary and pandas tables, written as one run folder (atomically).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from .cache import RawCache
from .card import QUANTIZED, ModelCard
from .convert import ConvertedModel
from .data.wider import WiderDataset, open_wider
from .errors import InputDataError
from .executors import Executor
from .fileio import FolderCheck, atomic_dir, check_replaceable
from .inference import ModelUnderTest, model_set, run_models, scan_images
from .merge import shard_positions, write_records
from .metric.average_precision import EvalResult, MapAccumulator
from .metric.box_match import BoxMatchAccumulator
from .metric.parity import ParityAccumulator, ParityResult
from .model.decode import decode
from .model.detections import Detections
from .run_record import REFERENCE_MODEL, ROUTES, OutputParity, RunSummary, default_run_dir
from .workspace import Checkpoint, Workspace

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
              test_cache: RawCache) -> tuple[ParityResult, BoxMatchAccumulator, ParityAccumulator]:
    # Recorded per image, so that shard runs can be merged exactly (merge.py).
    num = ParityAccumulator(card, test.model.precision, ref.model.name, test.model.name, record=True)
    det = BoxMatchAccumulator(card.box_match.min_score, card.box_match.iou)
    for k, rd, td in zip(keys, ref.detections, test.detections):
        num.update(ref_cache.get(k, ref.model.name)[0], test_cache.get(k, test.model.name)[0])
        det.update(rd, td)
    return num.compute(), det, num


# ------------------------------------------------------------------------------------------------------------
# The whole evaluation


@dataclass
class Evaluation:
    run_dir: Path
    summary: RunSummary
    scores: list[ModelScore]
    parity: list[ParityResult]
    inferred: dict[str, int]  # model -> images inferred in this call (0 = all from cache)
    image_warnings: dict[str, str] = field(default_factory=dict)  # identifier -> damage found in the file


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
             jobs: int = 0, official_gt: str | Path | None = None, strict_images: bool = False,
             exec_precisions: Sequence[str] = ("f32", "default"), checked: FolderCheck | None = None,
             executor: Executor | None = None) -> Evaluation:
    """Evaluate MXNet and the IRs on a WIDER-layout dataset; write the run folder; return the records.

    An image that decodes but is damaged (a truncated JPEG) is named in ``Evaluation.image_warnings`` and the
    report's ``image_warnings`` table; with ``strict_images`` it is an error before any inference.

    ``exec_precisions`` (``f32``, ``bf16``, ``default``): how each IR is executed. ``f32`` pins f32 (numeric parity:
    ``ir-fp32``); ``default`` adds the runtime's own choice on this CPU when it differs (``ir-fp32@bf16``), which is
    what a deployment runs.

    ``executor``: where inference runs (``executors.open_executor``; default: here).

    ``checked``: what the caller's :func:`~ssh_toolkit.fileio.check_replaceable` found at ``run_dir`` before its
    own work (``run``: before conversion); the run folder is not written if it changed since.
    """
    from .report.markdown import evaluation_markdown, run_metadata, write_report

    size = card.resolve_input_size(input_size)
    selected = model_set(card, checkpoint, irs, size, models, jobs=jobs, exec_precisions=exec_precisions)
    run_dir = Path(run_dir) if run_dir else default_run_dir(f"{checkpoint.kind}-{size}")
    if checked is None:
        checked = check_replaceable(run_dir, "run")  # before hours of inference, not after
    ds = open_wider(data_root)
    base = ds.select(subset=subset) if subset is not None else ds
    base_selection = base.selection
    ds = ds.select(limit=limit, shard=shard, subset=subset)
    position_of = dict(zip(ds.identifiers, shard_positions(len(ds.images), shard)))  # before --shard (merge.py)
    present, missing = ds.check_images(skip_missing=skip_missing)
    if missing:
        if not present:
            raise InputDataError(f"{ds.images_dir}: none of the {len(missing)} selected images exists")
        ds = replace(ds, images=present, selection=f"{ds.selection}, {len(missing)} missing skipped")
    paths = [ds.image_path(im) for im in ds.images]
    official_truth = None
    if official_gt is not None:  # read before inference: a bad file should not cost hours first
        from .data.wider_official_gt import load_official_ground_truth

        official_truth = load_official_ground_truth(official_gt).subset(ds.identifiers)
    images = scan_images(paths, progress=progress)
    image_warnings = {ds.images[i].identifier: w for i, w in images.warnings.items()}
    if image_warnings and strict_images:
        first = next(iter(images.warnings))
        raise InputDataError(f"{images.paths[first]}: {images.warnings[first]}"
                             + (f" (and {len(image_warnings) - 1} more damaged images)" if len(image_warnings) > 1
                                else "") + "; --strict-images refuses damaged images")
    for i, w in images.warnings.items():
        (tqdm.write if progress else print)(f"warning: {images.paths[i]}: {w}")
    keys = images.keys
    caches, inferred = run_models(card, selected, images, workspace, size, progress=progress, executor=executor)

    scores = [score_model(card, m, ds, keys, caches[m.name], size) for m in selected]
    by_name = {s.model.name: s for s in scores}
    parity: list[ParityResult] = []
    box_match, hist_frames, parity_accs = {}, [], {}
    if REFERENCE_MODEL in by_name:
        ref = by_name[REFERENCE_MODEL]
        for s in scores:
            if not s.model.is_reference:
                num, det, acc = parity_of(card, ref, s, keys, caches[REFERENCE_MODEL], caches[s.model.name])
                parity.append(num)
                box_match[s.model.name] = det.compute()
                hist_frames.append(_hist_frame(s.model.name, acc))
                parity_accs[s.model.name] = acc

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
                 **dataset_identity(ds),
                 "images_sha256": images.digest, "image_warnings": image_warnings},
        precisions={s.model.name: s.model.precision for s in scores},
        parity={p.test: {d.name: OutputParity.of(d) for d in p.diffs} for p in parity},
        box_match=box_match, official=official, card_sha256=meta["card_sha256"], versions=meta["versions"],
        created=meta["created"], runtime=runtime_info() if any(not m.is_reference for m in selected) else {},
    )
    tables = _tables(scores, parity, box_match, hist_frames)
    if image_warnings:
        import pandas as pd

        tables["image_warnings"] = pd.DataFrame([{"image": k, "warning": v} for k, v in image_warnings.items()])
    if quantized := [ir for ir in irs if ir.precision == QUANTIZED and ir.model_name in by_name]:
        tables["quantization"] = _quantization_frame(quantized, data_root)
    if official:
        import pandas as pd

        tables["official"] = pd.DataFrame([{"model": m, "setting": k, "ap": v}
                                           for m, aps in official.items() for k, v in aps.items()])
    with atomic_dir(run_dir, kind="run", checked=checked) as tmp:
        summary.save(tmp)
        write_report(tmp, tables, {**meta, "run_id": run_dir.name, "command": "evaluate",
                                   "workspace": str(Path(workspace.root).absolute()),
                                   "data_root": str(Path(data_root).absolute()),
                                   "checkpoint": checkpoint.to_json(),
                                   "irs": [ir.to_json() for ir in irs if ir.model_name in by_name]},
                     evaluation_markdown(summary, tables))
        k, n = shard or (1, 1)
        write_records(tmp, meta={"models": {m.name: m.key for m in selected}, "base_selection": base_selection,
                                 "base_identity": dataset_identity(base), "shards": [k], "n_shards": n, "limit": limit, "checkpoint": checkpoint.to_json(),
                                 "irs": [ir.to_json() for ir in irs if ir.model_name in by_name]},
                      ids=ds.identifiers, positions=[position_of[i] for i in ds.identifiers], image_keys=keys,
                      gt=[im.boxes for im in ds.images], skipped=[(im.identifier, position_of[im.identifier])
                                                                  for im in missing],
                      detections={s.model.name: s.detections for s in scores},
                      seconds={s.model.name: s.seconds for s in scores}, parity=parity_accs)
    return Evaluation(run_dir, summary, scores, parity, inferred, image_warnings)


def _quantization_frame(quantized: Sequence[ConvertedModel], data_root: str | Path):
    """How each INT8 IR was made, and whether its calibration images are part of the evaluated set."""
    import pandas as pd

    from .quantize import SAME_FOLDER_NOTE

    rows = []
    for ir in quantized:
        same = Path(ir.calibration["root"]).resolve() == Path(data_root).resolve()
        rows.append({"model": ir.model_name, "calibration_root": ir.calibration["root"],
                     "calibration_images": ir.calibration["n_images"], "calibration_in_evaluation_set": same,
                     "max_drop": ir.max_drop, "validation_drop": ir.achieved_drop,
                     "float_layers": ", ".join(ir.float_layers), "nncf": ir.nncf_version,
                     "note": SAME_FOLDER_NOTE if same else ""})
    return pd.DataFrame(rows)


def runtime_info(device: str = "CPU") -> dict:
    """Where the IRs ran: the device, the CPU and its flags that change results, the device's default precision."""
    from .doctor import cpu_info
    from .runners.openvino import default_exec_precision

    cpu, flags = cpu_info()
    return {"device": device, "cpu": cpu, "cpu_flags": sorted(f for f, on in flags.items() if on),
            "default_exec_precision": default_exec_precision(device)}


def dataset_identity(ds: WiderDataset) -> dict[str, str]:
    """What identifies the evaluated selection for the gate: its image identifiers and its ground truth."""
    return identity_of(ds.identifiers, [im.boxes for im in ds.images])


def identity_of(identifiers: Sequence[str], boxes: Sequence[np.ndarray]) -> dict[str, str]:
    """:func:`dataset_identity` of images given by identifier and ground-truth boxes, in order."""
    h = hashlib.sha256()
    for identifier, b in zip(identifiers, boxes):
        h.update(identifier.encode())
        h.update(np.ascontiguousarray(b, np.float64).tobytes())
    return {"identifiers_sha256": hashlib.sha256("\n".join(identifiers).encode()).hexdigest(),
            "annotations_sha256": h.hexdigest()}


def _tables(scores: Sequence[ModelScore], parity: Sequence[ParityResult], box_match: dict, hist_frames: list):
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
        tables["box_match"] = pd.DataFrame([{"model": m, **d.__dict__} for m, d in box_match.items()])
    return tables


def _in_its_folder(ir: ConvertedModel, route: str, precision: str) -> ConvertedModel:
    """``ir`` when its record says the route and precision of the folder it lies in (else two models of a run
    would share one name): InputDataError naming the record otherwise."""
    if (ir.route, ir.precision) != (route, precision):
        def what(r: str, p: str) -> str:
            return f"{'Model Optimizer' if r == 'mo' else f'the {r} route'}'s {p} IR"

        again = replace(ir, route=route, precision=precision, dynamic=False).convert_command()
        raise InputDataError(f"{ir.directory / 'conversion.json'}: records {what(ir.route, ir.precision)}, but this "
                             f"is the folder of {what(route, precision)}; run '{again}'")
    return ir


def load_irs(card: ModelCard, checkpoint: Checkpoint, workspace: Workspace, size: int,
             precisions: Sequence[str] | None = None) -> list[ConvertedModel]:
    """The converted IRs available for this checkpoint and size (those not converted are left out): Model
    Optimizer's, then the native route's."""
    irs = []
    for route in ROUTES:
        for p in precisions or card.precisions:
            directory = workspace.ir_dir(checkpoint.kind, size, p, route)
            if (directory / "conversion.json").is_file():
                irs.append(_in_its_folder(ConvertedModel.load(directory), route, p))
        if route == "mo" and card.quantize is not None and (precisions is None or QUANTIZED in precisions):
            from .quantize import QuantizedModel  # the INT8 IR of 'ssh-toolkit quantize', when there is one

            directory = workspace.ir_dir(checkpoint.kind, size, QUANTIZED)
            if (directory / "conversion.json").is_file():
                q = QuantizedModel.load(directory)
                if stale := q.stale(workspace):
                    print(f"warning: {stale}", file=sys.stderr)
                else:
                    irs.append(q)
    return irs

