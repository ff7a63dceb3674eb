"""Run every model over the images, once: the cached phase that ``compare`` and ``evaluate`` share.

Like Polygraphy's comparator loop, it knows nothing about the runners it drives: each model under test is a
name, a cache key and a factory for a :class:`~ssh_toolkit.runners.base.Runner`, and each runner's
``infer_many`` decides how to get through the images (MXNet one by one, OpenVINO through its async queue).
Every image's raw outputs go into the cache (``cache.RawCache``) as soon as they exist, keyed by the model's
files as they are now, the runtime configuration, the input size and the image's bytes; so an interrupted
command resumes where it stopped, and scoring, parity and reports never need inference again.
"""

from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from tqdm import tqdm

from .cache import CACHE_VERSION, RawCache
from .card import EXEC_SUFFIXES, QUANTIZED, ModelCard
from .convert import ConvertedModel
from .data.images import scan_file
from .errors import UsageError
from .executors import Executor, LocalExecutor
from .fileio import sha256_file
from .run_record import REFERENCE_MODEL, ROUTES, ir_model_name
from .runners.base import Runner
from .runners.openvino import EXEC_CHOICES, PARITY_CONFIG
from .runners.spec import RunnerSpec
from .workspace import Checkpoint, Workspace

# Over a dataset, run several infer requests in parallel streams (benchmark_app's default); f32 stays pinned.
# With the default latency hint OpenVINO compiles one stream and the async queue runs one request at a time.
DATASET_CONFIG = {**PARITY_CONFIG, "PERFORMANCE_HINT": "THROUGHPUT"}
PINNED = "f32"  # the execution precision of the parity models (ir-fp32, ir-fp16)


@dataclass(frozen=True)
class ExecVariant:
    """How an IR is executed: the precision that runs, and the runtime configuration that makes it run so."""

    precision: str  # f32 | bf16 | f16: what the compiled model runs in (the model name's suffix unless pinned f32)
    config: dict = field(hash=False)
    requested: str  # the --exec-precision it came from

    def model_name(self, ir_precision: str, route: str = "mo") -> str:
        return ir_model_name(ir_precision, None if self.precision == PINNED else self.precision, route)

    def card_precision(self, ir_precision: str) -> str:
        """The key of the card's tolerances and gate limits: ``FP32``, or ``FP32@bf16`` for the bf16 run."""
        return ir_precision if self.precision == PINNED else f"{ir_precision}@{self.precision}"


def exec_variants(requested: Sequence[str], device: str = "CPU") -> tuple[list[ExecVariant], list[str]]:
    """The distinct execution variants for ``requested`` (``f32``, ``bf16``, ``default``), and notes on those
    that fold into another (``default`` on a CPU that runs f32 anyway is the pinned f32 model)."""
    from .runners.openvino import default_exec_precision

    variants: dict[str, ExecVariant] = {}
    notes = []
    for r in dict.fromkeys(requested):
        if r not in EXEC_CHOICES:
            raise UsageError(f"--exec-precision {r!r}: expected one of {', '.join(EXEC_CHOICES)}")
        if r == "default":
            p = default_exec_precision(device)
            config = {"PERFORMANCE_HINT": "THROUGHPUT"}  # nothing pinned: what a deployment gets
        else:
            p = r
            config = {**DATASET_CONFIG, "INFERENCE_PRECISION_HINT": r}
        if p in variants:
            notes.append(f"--exec-precision {r}: this {device} runs {p} by default, the same as "
                         f"--exec-precision {variants[p].requested}; evaluated once")
            continue
        variants[p] = ExecVariant(p, config, r)
    return list(variants.values()), notes


@dataclass(frozen=True)
class ModelUnderTest:
    name: str  # mxnet | ir-fp32 | ir-fp16 | ir-fp32@bf16 | ...
    precision: str  # the card's key for its tolerances and limits: FP32, FP16, FP32@bf16, ...
    key: str  # identifies weights + graph + input size + runtime and its config: the cache folder
    side: str  # which preprocessing of the card: "mxnet" or "ir"
    make_runner: Callable[[], Runner] = field(repr=False, compare=False)
    exec_precision: str = PINNED  # what the model runs in
    # The runner's files and arguments, for an executor that runs it elsewhere (None: only make_runner).
    spec: RunnerSpec | None = field(default=None, repr=False, compare=False)

    @property
    def is_reference(self) -> bool:
        return self.name == REFERENCE_MODEL


def model_set(card: ModelCard, checkpoint: Checkpoint, irs: Sequence[ConvertedModel], input_size: int,
              names: Sequence[str] | None = None, *, jobs: int = 0,
              exec_precisions: Sequence[str] = (PINNED,)) -> list[ModelUnderTest]:
    """MXNet plus every IR at every execution variant, narrowed to ``names``.

    An IR at pinned f32 is ``ir-fp32``/``ir-fp16`` (numeric parity); at another precision it is named after the
    precision that actually runs, ``ir-fp32@bf16``. An unknown or unavailable name is a usage error.
    """
    from importlib.metadata import version

    outs = card.output_names
    variants, _ = exec_variants(exec_precisions) if irs else ([], [])

    def cache_key(*parts: object) -> str:
        # Everything that shapes the raw outputs: the model files as they are now (not as recorded, so an edited
        # file never hits the cache), the input size, the shared resize and the side's own preprocessing, the
        # runtime config (another stream/thread split may change the last bits) and the cache format.
        text = "|".join(map(str, (CACHE_VERSION, input_size, card.resize_interpolation, *parts)))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    mx_key = cache_key("mxnet", version("mxnet"), sha256_file(checkpoint.params_path),
                       sha256_file(checkpoint.symbol_path), card.preprocess["mxnet"])
    mx_spec = RunnerSpec("mxnet", (checkpoint.symbol_path, checkpoint.params_path),
                         {"checkpoint": checkpoint, "input_name": card.input.name, "input_size": input_size,
                          "expected_outputs": outs})
    models = [ModelUnderTest(REFERENCE_MODEL, "FP32", f"mxnet-{mx_key}", "mxnet", mx_spec.build, spec=mx_spec)]
    for ir in irs:
        if ir.input_size != input_size:
            raise UsageError(f"{ir.xml}: converted at input size {ir.input_size}, evaluating at {input_size}")
        files = ir.check_files()  # as converted (conversion.json), before anything runs it
        for v in variants:
            name = v.model_name(ir.precision, ir.route)
            # The runtime's version is part of the key: another OpenVINO may compile other kernels.
            key = cache_key("ir", version("openvino"), *files, card.preprocess["ir"], v.precision,
                            sorted(v.config.items()))
            spec = RunnerSpec("openvino", (ir.xml, ir.xml.with_suffix(".bin")),
                              {"xml_name": ir.xml.name, "expected_outputs": outs, "name": name, "config": v.config,
                               "jobs": jobs, "expect_exec_precision": v.precision})
            models.append(ModelUnderTest(name, v.card_precision(ir.precision), f"{name}-{key}", "ir", spec.build,
                                         exec_precision=v.precision, spec=spec))
    if names:
        available = {m.name: m for m in models}
        unknown = [n for n in names if n not in available]
        if unknown:
            # What each IR model name needs: the IR's precision and the --exec-precision that runs it so.
            needs = {ir_model_name(p, e, r): (p, e or PINNED, r) for r in ROUTES for p in card.precisions
                     for e in (None, *EXEC_SUFFIXES)}
            if card.quantize is not None:  # the INT8 IR of 'ssh-toolkit quantize'
                needs.update({ir_model_name(QUANTIZED, e): (QUANTIZED, e or PINNED, "mo")
                              for e in (None, *EXEC_SUFFIXES)})
            converted = {(ir.precision, ir.route) for ir in irs}
            name = unknown[0]
            if name in needs and needs[name][::2] in converted:
                p, exec_precision, route = needs[name]
                here = ", ".join(v.model_name(p, route) for v in variants)
                raise UsageError(f"--model {name}: not run under --exec-precision {', '.join(exec_precisions)}, "
                                 f"where this IR is {here}; add --exec-precision {exec_precision} to evaluate {name}")
            if name in needs and needs[name][0] == QUANTIZED:
                raise UsageError(f"--model {name}: not quantized at input size {input_size}; run 'ssh-toolkit "
                                 f"quantize --weights {checkpoint.kind} --input-size {input_size}' first")
            if name in needs:
                route = "" if needs[name][2] == "mo" else f" --route {needs[name][2]}"
                raise UsageError(f"--model {name}: not converted at input size {input_size}; run 'ssh-toolkit "
                                 f"convert --weights {checkpoint.kind} --input-size {input_size} --precision "
                                 f"{needs[name][0]}{route}' first")
            raise UsageError(f"--model {name} is not available; available: {', '.join(available)}")
        models = [available[n] for n in dict.fromkeys(names)]
    return models


@dataclass(frozen=True)
class ImageSet:
    """The images a command runs on, each read once up front: its content hash (the cache key) and damage."""

    paths: tuple[Path, ...]
    keys: tuple[str, ...]  # sha256 of each file's bytes
    warnings: dict[int, str] = field(default_factory=dict)  # index -> what is wrong with a file that still decodes

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(self.keys).encode()).hexdigest()


def scan_images(paths: Sequence[Path], *, progress: bool = True) -> ImageSet:
    """Hash every image and check it for damage that the decoder would hide (``data.images.damage``)."""
    keys, warnings = [], {}
    for i, p in enumerate(tqdm(paths, desc="hash images", unit="img", disable=not progress, leave=False)):
        key, problem = scan_file(p)
        keys.append(key)
        if problem:
            warnings[i] = problem
    return ImageSet(tuple(Path(p) for p in paths), tuple(keys), warnings)


def infer_missing(card: ModelCard, model: ModelUnderTest, images: ImageSet, cache: RawCache, size: int, *,
                  progress: bool = True, on_stored: Callable[[int], None] | None = None,
                  executor: Executor | None = None) -> int:
    """Infer every image without a cache entry, through ``executor`` (default: here, through the runner's
    ``infer_many``); returns how many.

    ``on_stored(i)`` is called once image ``i``'s outputs are in the cache (a hook for progress or timing).
    """
    todo = []
    for i, k in enumerate(images.keys):
        if cache.has(k) and (problem := cache.problem(k)):  # damaged since it was written: infer it again
            tqdm.write(f"warning: {problem}; inferring that image again", file=sys.stderr)
            cache.discard(k)
        if not cache.has(k):
            todo.append(i)
    if not todo:
        return 0
    with tqdm(total=len(todo), desc=f"infer {model.name}", unit="img", disable=not progress) as bar:

        def done(i: int, raw, hw: tuple[int, int]) -> None:
            cache.put(images.keys[i], raw, hw)
            bar.update(1)
            if on_stored is not None:
                on_stored(i)

        (executor or LocalExecutor()).infer(card, model, images.paths, todo, size, done)
    return len(todo)


def entry_spec(card: ModelCard, size: int) -> dict[str, tuple[int | None, ...]]:
    """What every cache entry of this card at ``size`` holds: each output as (1, channels, size/stride,
    size/stride)."""
    return {o.name: (1, None, size // o.stride, size // o.stride) for o in card.outputs}


def run_models(card: ModelCard, models: Sequence[ModelUnderTest], images: ImageSet, workspace: Workspace,
               size: int, *, progress: bool = True, executor: Executor | None = None
               ) -> tuple[dict[str, RawCache], dict[str, int]]:
    """Every model over every image, inferring only what the cache lacks, through ``executor`` (default: here).

    Returns each model's cache and how many images it inferred in this call (0: all from the cache).
    """
    expected = entry_spec(card, size)
    caches = {m.name: RawCache(workspace.cache, m.key, expected) for m in models}
    inferred = {}
    for m in models:
        start = time.perf_counter()
        inferred[m.name] = infer_missing(card, m, images, caches[m.name], size, progress=progress,
                                         executor=executor)
        if progress and inferred[m.name]:
            took = time.perf_counter() - start
            tqdm.write(f"{m.name}: {inferred[m.name]} images in {took:.1f} s ({inferred[m.name] / took:.2f} img/s)")
    return caches, inferred
