"""Numeric parity run: MXNet and each IR on the same images, each with its own preprocessing from the card."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .card import ModelCard
from .convert import ConvertedModel
from .errors import InputDataError
from .executors import Executor
from .inference import model_set, run_models, scan_images
from .metric.parity import ParityAccumulator, ParityResult
from .model.preprocess import resize, to_tensor
from .run_record import ir_model_name
from .workspace import Checkpoint, Workspace

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
NATIVE_PREFIX = ir_model_name("FP32", route="native").removesuffix("fp32")  # "ir-native-"


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
    inferred: dict[str, int] = field(default_factory=dict)  # model -> images inferred (0: all from the cache)
    # native route vs Model Optimizer, per output: rows of native, mo, output, max_abs, identical, n_images
    routes: list[dict] = field(default_factory=list)

    def __bool__(self) -> bool:
        return all(bool(r) for r in self.results)

    def to_frame(self):
        import pandas as pd

        return pd.concat([r.to_frame() for r in self.results], ignore_index=True)

    def routes_frame(self):
        import pandas as pd

        return pd.DataFrame(self.routes, columns=["native", "mo", "output", "max_abs", "identical", "n_images"])

    def self_check_frame(self):
        import pandas as pd

        if not self.self_check:
            return pd.DataFrame()
        df = pd.concat([r.to_frame() for r in self.self_check], ignore_index=True)
        return df.assign(test=df["test"] + "+swapped-channels")


def run_parity(card: ModelCard, checkpoint: Checkpoint, irs: Sequence[ConvertedModel], images: Sequence[Path],
               workspace: Workspace, *, swap_channels_check: bool = False, progress: bool = True,
               exec_precisions: Sequence[str] = ("f32",), executor: Executor | None = None) -> ParityRun:
    """Run MXNet (reference) and every IR on ``images``; accumulate per-output differences per IR.

    Inference goes through the same cached phase as ``evaluate`` (``inference.run_models``), so outputs
    already computed by either command are reused and an interrupted compare resumes.

    With ``swap_channels_check`` the IRs are also fed the wrong channel order (RGB instead of BGR) on the first
    image, to show how large the difference gets when preprocessing is wrong: a comparison that still passes
    then is useless. That deliberate mistake is never cached.
    """
    if not irs:
        raise InputDataError("no IR to compare; run 'ssh-toolkit convert' first")
    sizes = {ir.input_size for ir in irs}
    if len(sizes) != 1:
        raise InputDataError(f"the IRs were converted at different input sizes {sorted(sizes)}")
    size = sizes.pop()
    models = model_set(card, checkpoint, irs, size, exec_precisions=exec_precisions)
    image_set = scan_images(images, progress=progress)
    caches, inferred = run_models(card, models, image_set, workspace, size, progress=progress, executor=executor)
    ref, tests = models[0], models[1:]
    results = []
    for m in tests:
        acc = ParityAccumulator(card, m.precision, ref.name, m.name)
        for k in image_set.keys:
            acc.update(caches[ref.name].get(k, ref.name)[0], caches[m.name].get(k, m.name)[0])
        results.append(acc.compute())
    self_check = []
    if swap_channels_check:
        from .data.wider import read_image

        resized = resize(read_image(image_set.paths[0]), size).image
        bad = to_tensor(resized, card.preprocess["ir"], swap_channels=True)
        reference = caches[ref.name].get(image_set.keys[0], ref.name)[0]
        for m in tests:
            if card.parity_reported_only(m.precision):  # INT8 has no tolerance that could catch the mistake
                continue
            acc = ParityAccumulator(card, m.precision, ref.name, m.name)
            with m.make_runner() as runner:
                acc.update(reference, runner.infer(bad))
            self_check.append(acc.compute())
    routes = route_diffs(card, tests, caches, image_set.keys)
    return ParityRun(results, list(images), size, self_check, inferred, routes)


def route_diffs(card: ModelCard, models: Sequence, caches: dict, keys: Sequence[str]) -> list[dict]:
    """Each native-route model against the Model Optimizer model of the same precision and execution variant
    (``ir-native-fp32`` vs ``ir-fp32``): per output, the largest absolute difference over the images."""
    names = {m.name for m in models}
    rows = []
    for m in models:
        if not m.name.startswith(NATIVE_PREFIX) or (mo := "ir-" + m.name[len(NATIVE_PREFIX):]) not in names:
            continue
        worst = dict.fromkeys(card.output_names, 0.0)
        for k in keys:
            a, b = caches[m.name].get(k, m.name)[0], caches[mo].get(k, mo)[0]
            for name in worst:
                diff = np.abs(a[name].astype(np.float64) - b[name].astype(np.float64))
                worst[name] = max(worst[name], float(diff.max()) if diff.size else 0.0)
        rows += [{"native": m.name, "mo": mo, "output": name, "max_abs": v, "identical": v == 0.0,
                  "n_images": len(keys)} for name, v in worst.items()]
    return rows
