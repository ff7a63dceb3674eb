"""``convert --route native``: the checkpoint translated on the current OpenVINO and saved as an FP32/FP16 IR under
``ir/<kind>-<size>/native/<PRECISION>/``, with the same ``conversion.json`` record (plus ``route``) and the same
up-to-date check as Model Optimizer's route."""

from __future__ import annotations

import hashlib
import time
from dataclasses import replace
from pathlib import Path

from ..card import ModelCard
from ..convert import RECORD, ConvertedModel, _fingerprint, _up_to_date, check_checkpoint_naming, mo_arguments
from ..errors import ConversionError
from ..fileio import atomic_dir, sha256_file, write_json
from ..model.outputs import canonical_name
from ..report.markdown import versions
from ..workspace import Checkpoint, Workspace
from .translate import Preprocess, translate_files

DYNAMIC = "dynamic"  # the size part of a dynamic IR's folder: ir/<kind>-dynamic/native/<PRECISION>/


def translator_version() -> str:
    """Identifies the translation: the sha256 of the native route's source and the OpenVINO that saves the IR.
    Part of the up-to-date check, so a changed translator or runtime converts again."""
    import openvino

    h = hashlib.sha256()
    for name in ("ops.py", "translate.py", "convert.py"):
        h.update((Path(__file__).parent / name).read_bytes())
    return f"native-{h.hexdigest()[:12]} openvino-{openvino.get_version()}"


def native_arguments(card: ModelCard, checkpoint: Checkpoint, precision: str, size: int, dynamic: bool) -> list[str]:
    """The arguments of the record, in Model Optimizer's words (the same card keys mean the same here)."""
    args = mo_arguments(card, checkpoint, precision, size)
    if dynamic:
        args = [("--input_shape=[1,3,?,?]" if a.startswith("--input_shape=") else a) for a in args]
    return args


def _io(model) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    def dims(port) -> list[int]:
        return [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]

    return ({i.get_any_name(): dims(i) for i in model.inputs}, {o.get_any_name(): dims(o) for o in model.outputs})


def convert_native(card: ModelCard, checkpoint: Checkpoint, workspace: Workspace, precision: str,
                   input_size: int | None = None, *, force: bool = False, dynamic: bool = False) -> ConvertedModel:
    """Translate ``checkpoint`` (no MXNet, no Model Optimizer) to an IR of ``precision``; skip if up to date.

    The preprocessing is the card's ``convert.model_optimizer_args`` with Model Optimizer's meaning; an argument
    the native route cannot honour, an unsupported op or attribute is a UsageError (exit 2) before anything is
    written.
    """
    import openvino as ov

    size = card.resolve_input_size(input_size)
    check_checkpoint_naming(checkpoint)
    preprocess = Preprocess.from_mo_args(card.mo_args, card.input.name, card.path)
    args = native_arguments(card, checkpoint, precision, size, dynamic)
    version = translator_version()
    fingerprint = _fingerprint(checkpoint, args, version)
    target = workspace.ir_dir(checkpoint.kind, DYNAMIC if dynamic else size, precision, "native")
    if not force and (done := _up_to_date(target, fingerprint)):
        return replace(done, reused=True)

    start = time.perf_counter()
    hw = (None, None) if dynamic else (size, size)
    model = translate_files(checkpoint.symbol_path, checkpoint.params_path, input_name=card.input.name,
                            input_shape=(1, 3, *hw), preprocess=preprocess, outputs=card.output_names)
    with atomic_dir(target, kind="ir") as tmp:
        xml = tmp / f"{checkpoint.prefix}.xml"
        try:
            ov.save_model(model, str(xml), compress_to_fp16=precision == "FP16")
        except RuntimeError as e:
            from ..runners.openvino import reason

            raise ConversionError(f"{xml.name}: OpenVINO cannot save the translated model: {reason(e)}") from None
        seconds = time.perf_counter() - start
        ins, outs = _io(model)
        missing = [n for n in card.output_names if n not in {canonical_name(o) for o in outs}]
        if missing:  # translate() keeps exactly the card's outputs; a guard, not a user error
            raise ConversionError(f"{xml.name}: the IR lacks output(s) {missing}; it has {sorted(outs)}")
        done = ConvertedModel(
            directory=target, prefix=checkpoint.prefix, precision=precision, input_size=size,
            checkpoint_kind=checkpoint.kind, weights=checkpoint.weights,
            command=tuple(["native", *args, f"--output_dir={target}"]), mo_version="",
            seconds=round(seconds, 3), inputs=ins, outputs=outs,
            sha256={"xml": sha256_file(xml), "bin": sha256_file(xml.with_suffix(".bin"))},
            fingerprint=fingerprint, versions={**versions(), "native_translator": version}, mo_env={},
            route="native", dynamic=dynamic,
        )
        write_json(tmp / RECORD, done.to_json())
    return done
