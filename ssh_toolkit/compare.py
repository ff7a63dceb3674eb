"""Numeric parity run: MXNet and each IR on the same images, each with its own preprocessing from the card."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .card import ModelCard
from .convert import ConvertedModel
from .errors import InputDataError
from .metric.parity import ParityAccumulator, ParityResult
from .model.preprocess import resize, to_tensor
from .runners.mxnet import MXNetRunner
from .runners.openvino import OpenVINORunner
from .workspace import Checkpoint

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def list_images(folder: str | Path, limit: int | None = None) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputDataError(f"{folder}: image folder not found")
    images = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise InputDataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return images[:limit] if limit else images


@dataclass
class ParityRun:
    """The results of one ``compare``: one ParityResult per IR, plus the optional swapped-channel self-check."""

    results: list[ParityResult]
    images: list[Path]
    input_size: int
    self_check: list[ParityResult] = field(default_factory=list)

    def __bool__(self) -> bool:
        return all(bool(r) for r in self.results)

    def to_frame(self):
        import pandas as pd

        return pd.concat([r.to_frame() for r in self.results], ignore_index=True)

    def self_check_frame(self):
        import pandas as pd

        if not self.self_check:
            return pd.DataFrame()
        df = pd.concat([r.to_frame() for r in self.self_check], ignore_index=True)
        return df.assign(test=df["test"] + "+swapped-channels")


def run_parity(card: ModelCard, checkpoint: Checkpoint, irs: Sequence[ConvertedModel], images: Sequence[Path],
               *, swap_channels_check: bool = False, progress: bool = True) -> ParityRun:
    """Run MXNet (reference) and every IR on ``images``; accumulate per-output differences per IR.

    With ``swap_channels_check`` the IRs are also fed the wrong channel order (RGB instead of BGR), to show how
    large the difference gets when preprocessing is wrong: a comparison that still passes then is useless.
    """
    from .data.wider import read_image

    if not irs:
        raise InputDataError("no IR to compare; run 'ssh-toolkit convert' first")
    sizes = {ir.input_size for ir in irs}
    if len(sizes) != 1:
        raise InputDataError(f"the IRs were converted at different input sizes {sorted(sizes)}")
    size = sizes.pop()
    names = card.output_names
    accs = [ParityAccumulator(card, ir.precision, "mxnet", ir.model_name) for ir in irs]
    swapped = [ParityAccumulator(card, ir.precision, "mxnet", ir.model_name) for ir in irs] \
        if swap_channels_check else []
    ir_runners = [OpenVINORunner(ir.xml, names, name=ir.model_name) for ir in irs]
    mx_runner = MXNetRunner(checkpoint, card.input.name, size, names)
    # Read every image before loading models: a corrupt file should stop the run at once.
    decoded = [read_image(p) for p in images]
    with mx_runner:
        for r in ir_runners:
            r.activate()
        try:
            for i, image in enumerate(tqdm(decoded, desc="compare", unit="img", disable=not progress)):
                resized = resize(image, size).image
                ref = mx_runner.infer(to_tensor(resized, card.preprocess["mxnet"]))
                ir_input = to_tensor(resized, card.preprocess["ir"])
                for acc, runner in zip(accs, ir_runners):
                    acc.update(ref, runner.infer(ir_input))
                if swapped and i == 0:  # one image is enough to show the effect
                    bad = to_tensor(resized, card.preprocess["ir"], swap_channels=True)
                    for acc, runner in zip(swapped, ir_runners):
                        acc.update(ref, runner.infer(bad))
        finally:
            for r in ir_runners:
                r.deactivate()
    return ParityRun([a.compute() for a in accs], list(images), size, [a.compute() for a in swapped])
