"""Post-training INT8 of the FP32 IR with accuracy control (``ssh-toolkit quantize``).

NNCF's ``quantize_with_accuracy_control`` quantizes the FP32 IR on calibration images drawn with a fixed seed, then
puts layers back into floating point until the INT8 IR loses at most ``max_drop`` mAP points against the FP32 IR.
The metric is the toolkit's own: the card's decoder and the protocol's mAP (``metric.average_precision``) over the
validation images, returned with one value per image so that NNCF ranks layers without calling it per image.

The result is ``ir/<kind>-<size>/INT8/`` beside the FP32 and FP16 IRs, written atomically, with a record
(``conversion.json``, read by :class:`QuantizedModel`) naming the NNCF and OpenVINO versions, the calibration images
and their hash, whether they are part of the evaluation set, the achieved drop, the layers kept in floating point
and the duration. Like ``convert`` it is skipped when up to date (same FP32 IR, images, settings and versions).
A drop limit that cannot be reached is a :class:`~ssh_toolkit.errors.GateFailure` (exit 1) naming the best drop
achieved and what was tried; nothing is written then, and an older INT8 IR of this checkpoint and size is removed.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from tqdm import tqdm

from .card import QUANTIZED, ModelCard, QuantizeSpec
from .convert import RECORD, ConvertedModel, check_record_types
from .data.wider import WiderDataset, open_wider, read_image
from .errors import CardError, EnvironmentProblem, GateFailure, InputDataError
from .fileio import atomic_dir, check_replaceable, remove_owned_dir, sha256_file, write_json
from .workspace import Checkpoint, Workspace

SAME_FOLDER_NOTE = ("the calibration images are part of the evaluation set (calibration and evaluation data are "
                    "the same folder)")


@dataclass(frozen=True)
class QuantizedModel(ConvertedModel):
    """The INT8 IR and how it was made; read by ``evaluation.load_irs`` like the IRs Model Optimizer wrote.

    ``mo_version``/``mo_env`` are those of the FP32 IR it was quantized from; ``command`` is the quantize command.
    """

    source: dict = field(default_factory=dict)  # the FP32 IR: directory, precision, fingerprint, sha256
    nncf_version: str = ""
    openvino_version: str = ""
    calibration: dict = field(default_factory=dict)  # root, n_images, asked, seed, identifiers, hashes, same_folder
    calibration_note: str = ""  # SAME_FOLDER_NOTE when the calibration images are evaluation images
    validation: dict = field(default_factory=dict)  # root, n_images, identifiers_sha256, images_sha256
    max_drop: float = 0.0
    map_fp32: float = 0.0  # on the validation images, percent
    map_int8: float = 0.0
    achieved_drop: float = 0.0  # map_fp32 - map_int8, mAP points
    float_layers: tuple[str, ...] = ()  # operations NNCF put back into floating point (their inputs unquantized)
    n_int8_layers: int = 0  # operations with a quantized input in the INT8 IR
    tried: tuple[float, ...] = ()  # the INT8 mAPs NNCF measured on the whole validation set, in order

    def convert_command(self) -> str:
        return (f"ssh-toolkit quantize --force --weights {self.checkpoint_kind} --input-size {self.input_size}")

    def stale(self, workspace: Workspace) -> str:
        """Why this INT8 IR is stale ("" when it is not): the FP32 IR beside it is no longer the one it was quantized
        from (converted again since, e.g. from another checkpoint). A stale INT8 IR is left out of evaluations."""
        fp32_dir = workspace.ir_dir(self.checkpoint_kind, self.input_size, "FP32")
        if (fp32_dir / RECORD).is_file() and ConvertedModel.load(fp32_dir).sha256 != self.source.get("sha256"):
            return (f"{self.directory}: quantized from another FP32 IR than the one in {fp32_dir} (converted again "
                    f"since); ir-int8 left out: run 'ssh-toolkit quantize --weights {self.checkpoint_kind} "
                    f"--input-size {self.input_size}'")
        return ""

    @classmethod
    def from_json(cls, d: dict, directory: str | Path) -> "QuantizedModel":
        """The record ``d`` (conversion.json, or a run's copy of it) of the INT8 IR in ``directory``; TypeError,
        KeyError or ValueError naming what is wrong with it."""
        d = dict(d) if isinstance(d, dict) else d
        check_record_types(cls, d)
        for key, inner in (("calibration", {"root": str, "n_images": int}), ("validation", {"n_images": int})):
            for k, kind in inner.items():
                if not isinstance(d.get(key, {}).get(k), kind) or isinstance(d[key][k], bool):
                    raise TypeError(f"key '{key}.{k}': expected {'a string' if kind is str else 'an integer'}, "
                                    f"got {d.get(key, {}).get(k)!r}")
        d["command"] = tuple(d["command"])
        d["float_layers"] = tuple(d.get("float_layers", ()))
        d["tried"] = tuple(d.get("tried", ()))
        return cls(directory=Path(directory), **d)

    @classmethod
    def load(cls, directory: str | Path) -> "QuantizedModel":
        directory = Path(directory)
        rec = directory / RECORD
        try:
            return cls.from_json(json.loads(rec.read_text()), directory)
        except FileNotFoundError:
            raise InputDataError(f"{rec}: no quantization record; run 'ssh-toolkit quantize' first") from None
        except (ValueError, TypeError, KeyError) as e:
            raise InputDataError(f"{rec}: corrupt quantization record ({e})") from None


def _versions() -> tuple[str, str]:
    from importlib.metadata import version

    return version("nncf"), version("openvino")


def quantize_spec(card: ModelCard) -> QuantizeSpec:
    if card.quantize is None:
        raise CardError(f"{card.path}: no 'quantize' section; add one (max_drop, calibration_images, subset_size, "
                        f"seed) to quantize with this card")
    return card.quantize


# ------------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class ImagePick:
    """Images of a WIDER-layout dataset: the dataset, the chosen images and their content hashes."""

    dataset: WiderDataset
    images: tuple  # WiderImage
    keys: tuple[str, ...]  # sha256 of each file

    @property
    def identifiers(self) -> list[str]:
        return [im.identifier for im in self.images]

    @property
    def paths(self) -> list[Path]:
        return [self.dataset.image_path(im) for im in self.images]

    def digest(self) -> dict[str, str]:
        return {"identifiers_sha256": hashlib.sha256("\n".join(self.identifiers).encode()).hexdigest(),
                "images_sha256": hashlib.sha256("\n".join(self.keys).encode()).hexdigest()}


def _hash(paths: Sequence[Path]) -> tuple[str, ...]:
    return tuple(sha256_file(p) for p in paths)


def calibration_images(root: str | Path, asked: int | None, default: int, seed: int) -> ImagePick:
    """``asked`` images (card default: ``default``, or every present image when there are fewer) drawn with
    ``seed`` from the dataset at ``root``, each decoded once to check it is an image.

    InputDataError (exit 2): fewer images present than ``asked``, none present, or one that does not decode.
    """
    ds = open_wider(root)
    present, _ = ds.check_images(skip_missing=True)
    if not present:
        raise InputDataError(f"{ds.images_dir}: no readable calibration image (none of the {len(ds.images)} images "
                             f"listed in {ds.annotation_file} exists)")
    if asked is not None and asked > len(present):
        raise InputDataError(f"{ds.images_dir}: --calibration-images {asked} asked, but only {len(present)} of the "
                             f"{len(ds.images)} listed images are present")
    n = asked if asked is not None else min(default, len(present))
    order = np.sort(np.random.default_rng(seed).choice(len(present), size=n, replace=False))
    chosen = tuple(present[i] for i in order)
    for im in chosen:
        read_image(ds.image_path(im))  # InputDataError naming a file that does not decode
    return ImagePick(ds, chosen, _hash([ds.image_path(im) for im in chosen]))


def validation_images(root: str | Path, subset_size: int, card: ModelCard | None = None) -> ImagePick:
    """The first ``subset_size`` images of the evaluation data (0: all); every one must exist (as in evaluate).

    With ``card``: InputDataError (exit 2) when they hold no face the card's protocol counts (no ground truth, or
    only faces it ignores): their mAP would be 0 for any model, so no drop could be measured."""
    ds = open_wider(root).select(limit=subset_size or None)
    present, _ = ds.check_images()
    if card is not None:
        from .metric.average_precision import MapAccumulator
        from .model.detections import Detections

        acc = MapAccumulator(card.protocol)
        for im in present:
            acc.update(im.identifier, Detections.empty(), im.boxes)
        if acc.compute().n_pos == 0:
            raise InputDataError(f"{ds.annotation_file}: the {len(present)} validation images hold no face that "
                                 f"{card.protocol.name} counts (none annotated, or all outside its size range), so "
                                 f"no mAP drop can be measured; use more images (--subset-size) or other data "
                                 f"(--data-root)")
    return ImagePick(ds, present, _hash([ds.image_path(im) for im in present]))


def _tensor(card: ModelCard, path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    from .model.preprocess import resize, to_tensor

    image = read_image(path)
    return to_tensor(resize(image, size).image, card.preprocess["ir"]), image.shape[:2]


# ------------------------------------------------------------------------------------------------------------
# The metric NNCF optimises: the protocol's mAP, with one value per image


def map_with_per_image(card: ModelCard, predictions: Sequence[tuple[str, object, np.ndarray]]
                       ) -> tuple[float, list[float]]:
    """mAP (percent) of ``(identifier, Detections, gt boxes)`` items, and each image's own AP (percent) for
    NNCF's ranking of layers (an image without a positive face counts 0)."""
    from .metric.average_precision import MapAccumulator

    acc = MapAccumulator(card.protocol)
    per_image = []
    for identifier, dets, boxes in predictions:
        acc.update(identifier, dets, boxes)
        one = MapAccumulator(card.protocol).update(identifier, dets, boxes).compute().map_percent
        per_image.append(float(one) if math.isfinite(one) else 0.0)
    return float(acc.compute().map_percent), per_image


class Validator:
    """NNCF's ``validation_fn``: runs a compiled model over validation items (indices) and scores them."""

    def __init__(self, card: ModelCard, pick: ImagePick, size: int, progress: bool = True) -> None:
        self.card, self.pick, self.size, self.progress = card, pick, size, progress
        self.maps: list[tuple[int, float]] = []  # (images, mAP) of every call, in order

    def detections(self, compiled, indices: Sequence[int]) -> list:
        from .model.decode import decode
        from .model.outputs import RawOutputs

        request = compiled.create_infer_request()
        out = []
        for i in tqdm(indices, desc="validate", unit="img", leave=False, disable=not self.progress):
            im = self.pick.images[i]
            tensor, (h, w) = _tensor(self.card, self.pick.paths[i], self.size)
            request.infer({0: tensor})
            raw = RawOutputs.from_named(((o.get_any_name(), request.get_tensor(o).data.copy())
                                         for o in compiled.outputs), "quantize", expected=self.card.output_names)
            out.append((im.identifier, decode(raw.arrays, self.card, self.size / w, self.size / h), im.boxes))
        return out

    def __call__(self, compiled, items) -> tuple[float, list[float]]:
        indices = list(items)
        value, per_image = map_with_per_image(self.card, self.detections(compiled, indices))
        self.maps.append((len(indices), value))
        return value, per_image


def _compile_f32(model):
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def quantized_inputs(model) -> list[str]:
    """The operations with a quantized activation (a FakeQuantize not on a constant), in graph order: what runs in
    INT8. Weight quantizers are left out: NNCF turns them into INT8 constants in the final model."""
    out: dict[str, None] = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() != "Constant":
            for o in op.outputs():
                for t in o.get_target_inputs():
                    out[t.get_node().get_friendly_name()] = None
    return list(out)


def float_layers(fully_quantized, final) -> tuple[list[str], int]:
    """The operations NNCF put back into floating point (quantized in the fully quantized model, not in the final
    one), and how many operations of the final model run in INT8."""
    kept = set(quantized_inputs(final))
    return [n for n in quantized_inputs(fully_quantized) if n not in kept], len(kept)


# ------------------------------------------------------------------------------------------------------------
# The command


def save_ir(model, xml: Path, target: Path) -> None:
    """``xml`` and its .bin, without FP16 compression; EnvironmentProblem (exit 3) naming ``target`` when OpenVINO
    cannot write them (a full disk: OpenVINO says only "basic_ios::clear: iostream error")."""
    import openvino as ov

    try:
        ov.save_model(model, str(xml), compress_to_fp16=False)
    except RuntimeError as e:
        free = shutil.disk_usage(xml.parent).free
        raise EnvironmentProblem(f"{target}: OpenVINO could not write the INT8 IR ({' '.join(str(e).split())}; "
                                 f"{free / 1e6:.1f} MB free on its disk)") from None


def _fingerprint(source: ConvertedModel, card: ModelCard, size: int, calib: ImagePick, val: ImagePick,
                 max_drop: float, versions: tuple[str, str]) -> str:
    from .evaluation import dataset_identity

    val_ds = replace(val.dataset, images=val.images)
    parts = [source.fingerprint, source.sha256, size, card.protocol.as_dict(), card.preprocess["ir"], max_drop,
             calib.identifiers, calib.keys, val.keys, dataset_identity(val_ds), versions]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _up_to_date(directory: Path, fingerprint: str) -> QuantizedModel | None:
    if not (directory / RECORD).is_file():
        return None
    try:
        done = QuantizedModel.load(directory)
        if done.fingerprint != fingerprint:
            return None
        done.check_files()
    except InputDataError:
        return None
    return done


def quantize(card: ModelCard, checkpoint: Checkpoint, workspace: Workspace, data_root: str | Path, *,
             input_size: int | None = None, calibration_root: str | Path | None = None,
             calibration_count: int | None = None, max_drop: float | None = None, subset_size: int | None = None,
             seed: int | None = None, force: bool = False, progress: bool = True,
             say: Callable[[str], None] = print) -> QuantizedModel:
    """Quantize the FP32 IR of ``checkpoint`` at ``input_size`` to INT8 within ``max_drop`` mAP points.

    Defaults come from the card's ``quantize`` section. ``calibration_root`` (default: ``data_root``) is the
    WIDER-layout folder the calibration images are drawn from; ``data_root`` holds the validation images.
    """
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from .model.outputs import canonical_name
    from .report.markdown import versions

    spec = quantize_spec(card)
    max_drop = spec.max_drop if max_drop is None else float(max_drop)
    if not math.isfinite(max_drop):
        raise InputDataError(f"--max-drop {max_drop}: expected a finite number of mAP points")
    subset_size = spec.subset_size if subset_size is None else subset_size
    seed = spec.seed if seed is None else seed
    size = card.resolve_input_size(input_size)
    source_dir = workspace.ir_dir(checkpoint.kind, size, "FP32")
    if not (source_dir / RECORD).is_file():
        raise InputDataError(f"{source_dir}: no FP32 IR to quantize; run 'ssh-toolkit convert --weights "
                             f"{checkpoint.kind} --input-size {size} --precision FP32' first")
    source = ConvertedModel.load(source_dir)
    source.check_files()
    calibration_root = Path(calibration_root) if calibration_root is not None else Path(data_root)
    same_folder = calibration_root.resolve() == Path(data_root).resolve()
    calib = calibration_images(calibration_root, calibration_count, spec.calibration_images, seed)
    val = validation_images(data_root, subset_size, card)
    nncf_version, ov_version = _versions()
    fingerprint = _fingerprint(source, card, size, calib, val, max_drop, (nncf_version, ov_version))
    target = workspace.ir_dir(checkpoint.kind, size, QUANTIZED)
    if not force and (done := _up_to_date(target, fingerprint)):
        return replace(done, reused=True)
    checked = check_replaceable(target, "ir")  # before minutes of quantization, not after
    if calibration_count is None and len(calib.images) < spec.calibration_images:
        say(f"quantize: {len(calib.images)} calibration images (all present in {calib.dataset.images_dir}; the "
            f"card asks for {spec.calibration_images})")
    if same_folder:
        say(f"quantize: note: {SAME_FOLDER_NOTE}")

    start = time.perf_counter()
    nncf.set_log_level(40)  # errors only: the toolkit says what happened
    calib_paths = calib.paths
    calibration = nncf.Dataset(list(range(len(calib_paths))), lambda i: _tensor(card, calib_paths[i], size)[0])
    validator = Validator(card, val, size, progress)
    validation = nncf.Dataset(list(range(len(val.images))))
    model = ov.Core().read_model(str(source.xml))
    say(f"quantize: NNCF {nncf_version}, {len(calib.images)} calibration images, {len(val.images)} validation "
        f"images, max drop {max_drop:g} mAP points")
    with tempfile.TemporaryDirectory(prefix="ssh-toolkit-int8-") as first:  # NNCF's fully quantized model
        try:
            int8 = nncf.quantize_with_accuracy_control(
                model, calibration, validation, validator, max_drop=max_drop, drop_type=nncf.DropType.ABSOLUTE,
                subset_size=len(calib.images),
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(intermediate_model_dir=first))
        except RuntimeError as e:  # OpenVINO inside NNCF: e.g. the temporary folder's disk is full
            free = shutil.disk_usage(first).free
            raise EnvironmentProblem(f"quantize: NNCF failed ({' '.join(str(e).split())}); its temporary folder "
                                     f"{first} has {free / 1e6:.1f} MB free") from None
        kept, n_int8 = float_layers(ov.Core().read_model(str(Path(first) / "intermediate_model.xml")), int8)
    # What NNCF returned, measured as evaluate will run it (pinned f32 hint) on the whole validation set.
    n_val = len(val.images)
    full = [m for n, m in validator.maps if n == n_val]
    map_fp32 = full[0]
    map_int8, _ = map_with_per_image(card, validator.detections(_compile_f32(int8), range(n_val)))
    tried = tuple(full[1:])
    drop = map_fp32 - map_int8
    seconds = time.perf_counter() - start
    if drop > max_drop + 1e-9:
        best = map_fp32 - max([*tried, map_int8])
        removed = remove_owned_dir(target, "ir")
        raise GateFailure(
            f"quantize: the INT8 IR's mAP drop against the FP32 IR is {drop:.3f} points on {n_val} validation "
            f"images, more than --max-drop {max_drop:g}; best drop achieved {best:.3f} points after NNCF tried "
            f"{len(tried)} INT8 variants (fully quantized first, then operations back in floating point: "
            f"{len(kept)} of {len(kept) + n_int8} at the end); no INT8 IR written"
            + (f" (the previous one in {target} was removed)" if removed else "")
            + "; allow a larger drop or use other calibration images")

    with atomic_dir(target, kind="ir", checked=checked) as tmp:
        xml = tmp / f"{source.prefix}.xml"
        save_ir(int8, xml, target)
        saved = ov.Core().read_model(str(xml))
        ins = {i.get_any_name(): list(i.get_partial_shape().get_shape()) for i in saved.inputs}
        outs = {o.get_any_name(): list(o.get_partial_shape().get_shape()) for o in saved.outputs}
        missing = [n for n in card.output_names if n not in {canonical_name(o) for o in outs}]
        if missing:
            raise InputDataError(f"{xml.name}: the INT8 IR lacks output(s) {missing}; it has {sorted(outs)}")
        command = ["ssh-toolkit", "quantize", "--weights", checkpoint.kind, "--input-size", str(size),
                   "--data-root", str(data_root), "--calibration-root", str(calibration_root),
                   "--calibration-images", str(len(calib.images)), "--max-drop", f"{max_drop:g}",
                   "--subset-size", str(subset_size), "--seed", str(seed)]
        done = QuantizedModel(
            directory=target, prefix=source.prefix, precision=QUANTIZED, input_size=size,
            checkpoint_kind=checkpoint.kind, weights=checkpoint.weights, command=tuple(command),
            mo_version=source.mo_version, seconds=round(seconds, 3), inputs=ins, outputs=outs,
            sha256={"xml": sha256_file(xml), "bin": sha256_file(xml.with_suffix(".bin"))},
            fingerprint=fingerprint, versions={**versions(), "nncf": nncf_version}, mo_env=source.mo_env,
            source={"directory": str(source.directory), "precision": source.precision,
                    "fingerprint": source.fingerprint, "sha256": source.sha256},
            nncf_version=nncf_version, openvino_version=ov_version,
            calibration={"root": str(calibration_root), "n_images": len(calib.images), "asked": calibration_count,
                         "seed": seed, "identifiers": calib.identifiers, **calib.digest(),
                         "same_folder_as_evaluation": same_folder},
            calibration_note=SAME_FOLDER_NOTE if same_folder else "",
            validation={"root": str(data_root), "n_images": n_val, "subset_size": subset_size, **val.digest()},
            max_drop=max_drop, map_fp32=map_fp32, map_int8=map_int8, achieved_drop=drop,
            float_layers=tuple(kept), n_int8_layers=n_int8, tried=tried,
        )
        write_json(tmp / RECORD, done.to_json())
    return done


def _say_on_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quantize_in_child(card: ModelCard, checkpoint: Checkpoint, workspace: Workspace, data_root: str | Path,
                      **options: Any) -> QuantizedModel:
    """:func:`quantize` in a fresh process, for callers that go on to run inference in this one (``run``).

    Measured here: after NNCF's accuracy control had run in the same process, OpenVINO 2026.4 once returned wrong
    values for one output branch of the next compiled model (``run`` on a fresh clone: ``ir-fp32`` stride-32
    outputs off by up to 20, the other outputs exact; seen twice in many runs, not reproduced in isolation). The
    child ends before inference starts, so nothing NNCF compiled or changed shares the runtime with evaluation.
    Errors come back as the same exceptions; the child's messages go to stderr.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    options.pop("say", None)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(quantize, card, checkpoint, workspace, data_root, say=_say_on_stderr, **options)
        try:
            return future.result()
        except BrokenProcessPool:
            raise EnvironmentProblem("quantize: the quantization process ended without a result (killed, or out of "
                                     "memory); nothing was written, run the command again") from None
