"""Benchmark ``evaluate`` against peers measured in the same run: OpenVINO's ``benchmark_app`` and the
Accuracy Checker (AC) metric.

What it measures (both sides back to back, in alternating order, ``--rounds`` times; medians are reported,
because timings on a small shared machine swing by ~1.7x between runs, so only same-run ratios mean much):

1. Throughput of our OpenVINO inference phase. A temporary workspace gets the stand-in SSH checkpoint (or
   the toy detector with ``--kind toy``), an FP32 IR at ``--input-size`` and ``--images`` sample images.
   * ours: :func:`ssh_toolkit.inference.infer_missing` for ``ir-fp32`` with an empty cache, i.e. image
     decoding, resizing, inference and writing the raw-output cache. Reported three ways: *all-in* (images /
     wall clock, model compile included), *excl. compile*, and *steady* ((n-1) / time between the first and
     the last finished image: no compile, no first-inference warm-up; the figure that predicts a 3,226-image
     run).
   * peer: ``benchmark_app -hint throughput -infer_precision f32 -ip f32`` on the same IR fed the same images;
     its figure (count / duration) excludes compile, warm-up and image decoding.
   * variant (unless ``--no-variant``): ours again with OpenVINO's default latency hint (one stream, one
     request at a time) instead of evaluate's ``PERFORMANCE_HINT: THROUGHPUT``, to show what that is worth.
   Also the split of one end-to-end :func:`ssh_toolkit.evaluation.evaluate` call (cold cache vs. the re-score
   with a warm cache).
2. Metric time at WIDER FACE scale on identical synthetic predictions (3,226 images x 2,800 predictions,
   boxes clustered around ~12 GT faces per image, many of them small, scores with ties): our
   :class:`~ssh_toolkit.metric.average_precision.MapAccumulator` (update + compute) vs. AC's
   ``PostprocessingExecutor`` (cast_to_int, clip_boxes, filter) + ``DetectionMAP``. AC takes seconds per
   image, so it runs on a subset (``--ac-images``) and is extrapolated linearly to the full set (a lower
   bound for AC: its global sort is n log n); ours runs on the same subset (the AP must be identical) and on
   the full set.

Reading the output: ``ratio`` is ours / peer for throughputs (>= 0.9 is the target) and ``Nx faster`` for
times. The machine's load average is printed; other jobs on it skew both sides of a pair alike but widen the
spread. ``--quick`` shrinks everything for a smoke run (< 1 minute).

    python benchmarks/bench_evaluate.py [--input-size N] [--images N] [--quick] [--kind standin|toy]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ssh_toolkit.cache import RawCache
from ssh_toolkit.card import ModelCard, Protocol, load_card
from ssh_toolkit.convert import ConvertedModel, convert
from ssh_toolkit.data.sample import make_sample
from ssh_toolkit.data.wider import WiderDataset, open_wider
from ssh_toolkit.evaluation import evaluate, score_model
from ssh_toolkit.inference import (
    DATASET_CONFIG,
    ImageSet,
    ModelUnderTest,
    infer_missing,
    model_set,
    scan_images,
)
from ssh_toolkit.metric.average_precision import MapAccumulator
from ssh_toolkit.model.detections import Detections
from ssh_toolkit.runners.openvino import PARITY_CONFIG, OpenVINORunner
from ssh_toolkit.workspace import Checkpoint, Workspace

WIDER_VAL_IMAGES = 3226
WIDER_VAL_FACES_PER_IMAGE = 39708 / 3226  # 12.3


# ------------------------------------------------------------------------------------------------------------
# Small helpers


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"
    except OSError:
        return "n/a"


def say(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------------------------
# Part 1: inference throughput


@dataclass
class Setup:
    card: ModelCard
    workspace: Workspace
    checkpoint: Checkpoint
    ir: ConvertedModel
    data_root: Path
    dataset: WiderDataset
    images: ImageSet
    image_folder: Path  # the same images, flat, for benchmark_app -i


def prepare(root: Path, kind: str, size: int, n_images: int) -> Setup:
    """Checkpoint (stand-in or toy) -> FP32 IR at ``size`` -> ``n_images`` sample images, under ``root``."""
    card = load_card()
    ws = Workspace(root)
    start = time.perf_counter()
    if kind == "toy":
        from ssh_toolkit.standins.toy import synthesize_toy

        ck = synthesize_toy(card, ws.checkpoint_dir("toy"))
    else:
        from ssh_toolkit.standins.synthesize import synthesize_standin

        ck = synthesize_standin(card, ws.checkpoint_dir("standin"), seed=0)
    ir = convert(card, ck, ws, "FP32", size)
    data_root = make_sample(ws.sample_data, seed=0, n_images=n_images)
    ds = open_wider(data_root)
    paths = [ds.image_path(im) for im in ds.images]
    folder = root / "bench-images"
    folder.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths):
        os.symlink(p.resolve(), folder / f"{i:05d}_{p.name}")
    say(f"setup: {kind} checkpoint, FP32 IR at {size}x{size}, {len(paths)} images "
        f"({time.perf_counter() - start:.1f} s)")
    return Setup(card, ws, ck, ir, data_root, ds, scan_images(paths, progress=False), folder)


class _TimedRunner(OpenVINORunner):
    """OpenVINORunner that records how long activation (model compilation) took, through the public API."""

    compile_seconds: float = 0.0

    def activate(self) -> "_TimedRunner":
        start = time.perf_counter()
        super().activate()
        self.compile_seconds = time.perf_counter() - start
        return self


@dataclass
class OursRun:
    n: int
    wall: float
    compile: float
    steady_ips: float

    @property
    def all_in_ips(self) -> float:
        return self.n / self.wall

    @property
    def excl_compile_ips(self) -> float:
        return self.n / (self.wall - self.compile)


def ours_model(s: Setup, config: dict[str, str] | None) -> tuple[ModelUnderTest, list[_TimedRunner]]:
    """The exact ``ir-fp32`` ModelUnderTest evaluate() builds, with a runner that times its compilation.
    ``config`` None uses evaluate's own dataset config (THROUGHPUT hint, f32 pinned)."""
    (model,) = model_set(s.card, s.checkpoint, [s.ir], s.ir.input_size, ["ir-fp32"])
    made: list[_TimedRunner] = []

    def make() -> _TimedRunner:
        r = _TimedRunner(s.ir.xml, s.card.output_names, name=model.name, config=config or DATASET_CONFIG)
        made.append(r)
        return r

    return dataclasses.replace(model, make_runner=make), made


def run_ours(s: Setup, cache_root: Path, config: dict[str, str] | None = None) -> OursRun:
    """One ``infer_missing`` over every image with an empty cache."""
    model, made = ours_model(s, config)
    cache = RawCache(cache_root, model.key)
    st: list[float] = []  # when each image's outputs reached the cache (= that image finished)
    start = time.perf_counter()
    n = infer_missing(s.card, model, s.images, cache, s.ir.input_size, progress=False,
                      on_stored=lambda i: st.append(time.perf_counter()))
    wall = time.perf_counter() - start
    steady = (len(st) - 1) / (st[-1] - st[0]) if len(st) > 1 and st[-1] > st[0] else float("nan")
    shutil.rmtree(cache_root, ignore_errors=True)
    return OursRun(n, wall, made[0].compile_seconds, steady)


@dataclass
class BenchAppRun:
    fps: float  # count / duration (what benchmark_app's "Throughput" line prints, unrounded)
    printed_fps: float
    count: int
    duration_s: float
    compile_s: float
    requests: int
    streams: str


def benchmark_app_path() -> str:
    found = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if not Path(found).is_file():
        raise SystemExit("benchmark_app not found (it comes with the openvino package: pip install -e . / "
                         "activate the virtualenv)")
    return found


def run_benchmark_app(xml: Path, images: Path, seconds: int) -> BenchAppRun:
    cmd = [benchmark_app_path(), "-m", str(xml), "-d", "CPU", "-hint", "throughput", "-t", str(seconds),
           "-infer_precision", "f32", "-ip", "f32", "-i", str(images)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-15:])
        raise SystemExit(f"benchmark_app failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")

    def grab(pattern: str, default: str | None = None) -> str:
        m = re.search(pattern, out)
        if m is None:
            if default is not None:
                return default
            raise SystemExit(f"benchmark_app output lacks {pattern!r}:\n{out[-2000:]}")
        return m.group(1)

    count = int(grab(r"Count:\s+(\d+) iterations"))
    duration = float(grab(r"Duration:\s+([\d.]+) ms")) / 1000.0
    return BenchAppRun(
        fps=count / duration, printed_fps=float(grab(r"Throughput:\s+([\d.]+) FPS")), count=count,
        duration_s=duration, compile_s=float(grab(r"Compile model took ([\d.]+) ms", "nan")) / 1000.0,
        requests=int(grab(r"asynchronously, (\d+) inference requests", "0")),
        streams=grab(r"NUM_STREAMS: (\S+)", "?"))


@dataclass
class ThroughputResult:
    ours: list[OursRun]
    peer: list[BenchAppRun]
    variant: list[OursRun]

    def ratio(self, metric: Callable[[OursRun], float], runs: list[OursRun] | None = None) -> float:
        """Median over rounds of the paired ratio ours / benchmark_app."""
        runs = self.ours if runs is None else runs
        return median([metric(o) / p.fps for o, p in zip(runs, self.peer)])


def measure_throughput(s: Setup, rounds: int, bench_seconds: int, variant: bool, scratch: Path
                       ) -> ThroughputResult:
    res = ThroughputResult([], [], [])
    latency = dict(PARITY_CONFIG)  # OpenVINO's default latency hint: one stream, one request at a time
    for r in range(rounds):
        steps: list[tuple[str, Callable[[], None]]] = [
            ("ours", lambda r=r: res.ours.append(run_ours(s, scratch / f"cache-ours-{r}"))),
            ("benchmark_app",
             lambda: res.peer.append(run_benchmark_app(s.ir.xml, s.image_folder, bench_seconds))),
        ]
        if variant:
            steps.append(("ours+LATENCY hint",
                          lambda r=r: res.variant.append(run_ours(s, scratch / f"cache-var-{r}", latency))))
        steps = steps[r % len(steps):] + steps[:r % len(steps)]  # rotate the order between rounds
        for name, step in steps:
            step()
            if name == "benchmark_app":
                p = res.peer[-1]
                say(f"  round {r + 1} benchmark_app: {p.fps:.3f} img/s ({p.count} inferences in "
                    f"{p.duration_s:.1f} s, {p.requests} requests, {p.streams} streams; printed "
                    f"'Throughput: {p.printed_fps} FPS')")
            else:
                o = (res.ours if name == "ours" else res.variant)[-1]
                say(f"  round {r + 1} {name}: {o.n} images in {o.wall:.2f} s = {o.all_in_ips:.3f} img/s "
                    f"all-in, "
                    f"{o.excl_compile_ips:.3f} excl. compile ({o.compile:.2f} s), {o.steady_ips:.3f} steady")
    return res


@dataclass
class EvaluateSplit:
    cold: float  # evaluate() with an empty cache
    warm: float  # evaluate() again: everything but inference
    scoring: float  # score_model alone: read cache, decode, mAP

    @property
    def inference(self) -> float:
        return self.cold - self.warm


def measure_evaluate_split(s: Setup, scratch: Path) -> EvaluateSplit:
    kw: dict[str, Any] = dict(models=["ir-fp32"], input_size=s.ir.input_size, progress=False)
    start = time.perf_counter()
    evaluate(s.card, s.checkpoint, [s.ir], s.data_root, s.workspace, run_dir=scratch / "run-cold", **kw)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    evaluate(s.card, s.checkpoint, [s.ir], s.data_root, s.workspace, run_dir=scratch / "run-warm", **kw)
    warm = time.perf_counter() - start
    model, _ = ours_model(s, None)
    start = time.perf_counter()
    score_model(s.card, model, s.dataset, s.images.keys, RawCache(s.workspace.cache, model.key), s.ir.input_size)
    scoring = time.perf_counter() - start
    return EvaluateSplit(cold, warm, scoring)


# ------------------------------------------------------------------------------------------------------------
# Part 2: metric at WIDER scale


Image = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # id, boxes (N,4) f64, scores (N,) f32, gt (G,4) f64


def synthetic_image(rng: np.random.Generator, index: int, n_pred: int, faces_per_image: float) -> Image:
    """One WIDER-like image: 1024 px wide; GT faces of log-normal height (median 28 px: most are under the
    protocol's 64 px and become ignored), integral x1 y1 x2 y2; ``n_pred`` predictions: per face one close hit
    with a high score and two looser duplicates with middling scores, the rest scattered with low scores;
    float32 scores on a 1/2048 grid (many ties); fractional coordinates, as decoded boxes divided by the
    scale are."""
    height = int(rng.integers(600, 1400))
    width = 1024
    n_gt = int(rng.negative_binomial(1, 1.0 / (faces_per_image + 1.0)))
    h = np.clip(np.exp(rng.normal(np.log(28.0), 0.9, n_gt)), 4, height - 1).round()
    w = np.maximum(1, (h * rng.uniform(0.6, 0.9, n_gt)).round())
    x = np.floor(rng.uniform(0, 1, n_gt) * np.maximum(1, width - w))
    y = np.floor(rng.uniform(0, 1, n_gt) * np.maximum(1, height - h))
    gt = np.c_[x, y, x + w, y + h]

    # near: per face one close hit and two looser duplicates (NMS runs per stride, so the decoded output
    # keeps a few boxes per face)
    n_near = min(n_pred, 3 * n_gt)
    src = np.repeat(gt, 3, axis=0)[:n_near]
    good = (np.arange(n_near) % 3 == 0)
    size = (src[:, 3] - src[:, 1])[:, None]
    near = src + rng.normal(0, 1, (n_near, 4)) * size * np.where(good, 0.05, 0.2)[:, None]
    n_far = n_pred - n_near
    fh = np.exp(rng.normal(np.log(40.0), 1.0, n_far))
    fw = fh * rng.uniform(0.5, 1.2, n_far)
    fx = rng.uniform(-20, width, n_far)
    fy = rng.uniform(-20, height, n_far)
    far = np.c_[fx, fy, fx + fw, fy + fh]
    boxes = np.r_[near, far] * rng.uniform(0.999, 1.001)  # one scale per image: fractional coordinates
    near_scores = np.where(good, rng.beta(8, 2, n_near), rng.beta(2, 4, n_near))
    scores = np.r_[near_scores, rng.beta(1, 8, n_far)]
    scores = (np.floor(scores * 2048) / 2048).astype(np.float32)
    perm = rng.permutation(n_pred)
    return f"{index // 100}--Event/img_{index}.jpg", boxes[perm], scores[perm], gt


def synthetic_wider(n_images: int, n_pred: int, faces_per_image: float, seed: int) -> list[Image]:
    return [synthetic_image(np.random.default_rng([seed, i]), i, n_pred, faces_per_image)
            for i in range(n_images)]


def ours_metric(p: Protocol, images: Sequence[Image]) -> tuple[float, float]:
    """(seconds, AP) of MapAccumulator update + compute."""
    start = time.perf_counter()
    acc = MapAccumulator(p)
    for i, b, s, g in images:
        acc.update(i, Detections(b, s), g)
    ap = acc.compute().ap
    return time.perf_counter() - start, ap


class AccuracyChecker:
    """AC's postprocessing + DetectionMAP configured exactly as Open Model Zoo's ssh-mxnet (the peer).

    AC lives in the legacy Model Optimizer environment (openvino-dev 2023.3 cannot share an environment with the
    OpenVINO 2026 runtime): ``ac_metric_worker.py`` runs there and times AC itself, so process start-up and the
    transfer of the predictions are not counted.
    """

    def __init__(self, p: Protocol) -> None:
        from ssh_toolkit.legacy_env import ensure_mo_env

        self.python = ensure_mo_env().python
        self.protocol = {"round_policy": p.round_policy, "clip_annotation": p.clip_annotation,
                         "height_range": list(p.height_range), "overlap_threshold": p.overlap_threshold,
                         "ignore_difficult": p.ignore_difficult, "include_boundaries": p.include_boundaries}

    def evaluate(self, images: Sequence[Image]) -> tuple[float, float]:
        """(seconds, AP); building AC's representations is not timed."""
        import json

        with tempfile.TemporaryDirectory(prefix="bench-ac-") as tmp:
            data = Path(tmp) / "images.npz"
            arrays = {}
            for k, (_, b, s, g) in enumerate(images):
                arrays.update({f"b{k}": b, f"s{k}": s, f"g{k}": g})
            np.savez(data, ids=np.array([i for i, *_ in images]), **arrays)
            worker = Path(__file__).with_name("ac_metric_worker.py")
            proc = subprocess.run([str(self.python), str(worker), str(data), json.dumps(self.protocol)],
                                  capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{worker}: the Accuracy Checker failed: {proc.stderr.strip()[-2000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return float(out["seconds"]), float(out["ap"])


@dataclass
class MetricResult:
    n_full: int
    n_sub: int
    n_pred: int
    ours_sub: list[float]
    ac_sub: list[float]
    ours_full: list[float]
    ap_ours_sub: float
    ap_ac_sub: float
    ap_ours_full: float

    @property
    def ac_full_extrapolated(self) -> float:
        return median(self.ac_sub) * self.n_full / self.n_sub

    @property
    def sub_speedup(self) -> float:
        return median([a / o for a, o in zip(self.ac_sub, self.ours_sub)])


def measure_metric(n_full: int, n_sub: int, n_pred: int, faces: float, rounds: int, seed: int
                   ) -> MetricResult:
    p = load_card().protocol
    start = time.perf_counter()
    images = synthetic_wider(n_full, n_pred, faces, seed)
    n_gt = sum(len(g) for *_, g in images)
    say(f"  data: {n_full} images x {n_pred} predictions ({n_full * n_pred:,} boxes), {n_gt:,} GT faces "
        f"({n_gt / n_full:.1f} per image), generated in {time.perf_counter() - start:.1f} s")
    sub = images[:n_sub]
    ac = AccuracyChecker(p)
    ours_sub, ac_sub, ours_full = [], [], []
    ap_ours = ap_ac = ap_full = float("nan")
    for r in range(rounds):
        pair = [("ours", lambda: ours_metric(p, sub)), ("AC", lambda: ac.evaluate(sub))]
        for name, fn in pair if r % 2 == 0 else pair[::-1]:
            t, ap = fn()
            (ours_sub if name == "ours" else ac_sub).append(t)
            if name == "ours":
                ap_ours = ap
            else:
                ap_ac = ap
            say(f"  round {r + 1} subset {n_sub} images, {name}: {t:.3f} s (AP {ap:.12f})")
        t, ap_full = ours_metric(p, images)
        ours_full.append(t)
        say(f"  round {r + 1} full {n_full} images, ours: {t:.2f} s (AP {ap_full:.12f})")
    return MetricResult(n_full, n_sub, n_pred, ours_sub, ac_sub, ours_full, ap_ours, ap_ac, ap_full)


# ------------------------------------------------------------------------------------------------------------
# Report


def table(rows: Sequence[tuple[str, str, str, str]]) -> str:
    head = ("metric", "ours", "peer", "ratio")
    widths = [max(len(r[k]) for r in (head, *rows)) for k in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in (head, *rows))


def summary_rows(args: argparse.Namespace, tp: ThroughputResult | None, split: EvaluateSplit | None,
                 mr: MetricResult | None) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    if tp is not None:
        peer = f"{median([p.fps for p in tp.peer]):.3f} (benchmark_app)"
        for label, fn in (("all-in", lambda o: o.all_in_ips), ("excl. compile", lambda o: o.excl_compile_ips),
                          ("steady", lambda o: o.steady_ips)):
            rows.append((f"evaluate IR throughput, {label} (img/s)",
                         f"{median([fn(o) for o in tp.ours]):.3f}", peer, f"{tp.ratio(fn):.2f}"))
        if tp.variant:
            for label, fn in (("all-in", lambda o: o.all_in_ips), ("steady", lambda o: o.steady_ips)):
                rows.append((f"  same, LATENCY hint, {label} (img/s)",
                             f"{median([fn(o) for o in tp.variant]):.3f}", peer,
                             f"{tp.ratio(fn, tp.variant):.2f}"))
    if split is not None:
        rows.append((f"evaluate() {args.images} images, cold (s)", f"{split.cold:.2f}", "-", "-"))
        rows.append(("  inference (cold - warm) (s)", f"{split.inference:.2f}", "-",
                     f"{100 * split.inference / split.cold:.0f}% of cold"))
        rows.append(("  warm re-score: hash + score + report (s)", f"{split.warm:.2f}", "-",
                     f"{100 * split.warm / split.cold:.0f}% of cold"))
        rows.append(("    of which score_model: decode + mAP (s)", f"{split.scoring:.2f}", "-", "-"))
    if mr is not None:
        rows.append((f"metric, {mr.n_sub} x {mr.n_pred} (s)", f"{median(mr.ours_sub):.3f}",
                     f"{median(mr.ac_sub):.2f} (AC, measured)", f"{mr.sub_speedup:.0f}x faster"))
        full = median(mr.ours_full)
        rows.append((f"metric, {mr.n_full} x {mr.n_pred} (s)", f"{full:.2f}",
                     f"{mr.ac_full_extrapolated:.{0 if mr.ac_full_extrapolated >= 100 else 1}f} "
                     "(AC, extrapolated)",
                     f"{mr.ac_full_extrapolated / full:.0f}x faster"))
        same = abs(mr.ap_ours_sub - mr.ap_ac_sub) <= 1e-12
        rows.append((f"AP on the {mr.n_sub}-image subset", f"{mr.ap_ours_sub:.12f}",
                     f"{mr.ap_ac_sub:.12f} (AC)", "identical" if same else "DIFFERENT"))
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: small input, few images, a small metric set")
    ap.add_argument("--kind", choices=("standin", "toy"), default="standin", help="checkpoint to convert")
    ap.add_argument("--input-size", type=int, help="IR input size (default 640; quick 128)")
    ap.add_argument("--images", type=int, help="images for the throughput part (default 16; quick 4)")
    ap.add_argument("--bench-seconds", type=int, help="benchmark_app -t (default 25; quick 3)")
    ap.add_argument("--rounds", type=int, help="repetitions of each interleaved pair (default 2; quick 1)")
    ap.add_argument("--no-variant", action="store_true",
                    help="skip ours with the latency hint (one request at a time), shown for contrast")
    ap.add_argument("--metric-images", type=int,
                    help=f"full metric set (default {WIDER_VAL_IMAGES}; quick 300)")
    ap.add_argument("--max-preds", type=int, help="predictions per image (default 2800; quick 300)")
    ap.add_argument("--ac-images", type=int, help="subset timed for AC and ours (default 100; quick 15)")
    ap.add_argument("--faces-per-image", type=float, default=WIDER_VAL_FACES_PER_IMAGE)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-metric", action="store_true")
    ap.add_argument("--workspace", type=Path,
                    help="keep the workspace in this new folder (default: a temporary one)")
    a = ap.parse_args(argv)
    q = a.quick
    for name, full, quick in (("input_size", 640, 128), ("images", 16, 4), ("bench_seconds", 25, 3),
                              ("rounds", 2, 1), ("metric_images", WIDER_VAL_IMAGES, 300),
                              ("max_preds", 2800, 300), ("ac_images", 100, 15)):
        if getattr(a, name) is None:
            setattr(a, name, quick if q else full)
    a.ac_images = min(a.ac_images, a.metric_images)
    if q:
        a.no_variant = True
    return a


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    say(f"bench_evaluate: load average {load_average()}; settings: kind={args.kind} input={args.input_size} "
        f"images={args.images} benchmark_app -t {args.bench_seconds} rounds={args.rounds} metric="
        f"{args.metric_images}x{args.max_preds} AC subset={args.ac_images}")
    tp = split = mr = None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        root = args.workspace or Path(tmp) / "ws"
        if args.workspace and root.exists():
            raise SystemExit(f"{root}: --workspace must not exist yet (the cache must start empty)")
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()
        if not args.skip_throughput:
            say("== 1. inference throughput: evaluate's infer_missing vs benchmark_app "
                "(same IR, same images)")
            s = prepare(root, args.kind, args.input_size, args.images)
            tp = measure_throughput(s, args.rounds, args.bench_seconds, not args.no_variant, scratch)
            say("== 1b. evaluate() end to end: cold cache, then warm (re-score only)")
            split = measure_evaluate_split(s, scratch)
            say(f"  cold {split.cold:.2f} s, warm {split.warm:.2f} s, score_model {split.scoring:.2f} s")
        if not args.skip_metric:
            say("== 2. metric at WIDER scale: MapAccumulator vs AC postprocessing + DetectionMAP")
            mr = measure_metric(args.metric_images, args.ac_images, args.max_preds, args.faces_per_image,
                                args.rounds, args.seed)
    say(f"\n== summary (medians of {args.rounds} round(s); load average now {load_average()}; "
        f"total {time.perf_counter() - started:.0f} s)")
    say(table(summary_rows(args, tp, split, mr)))
    if mr is not None and abs(mr.ap_ours_sub - mr.ap_ac_sub) > 1e-12:
        say(f"ERROR: AP differs on the subset: ours {mr.ap_ours_sub!r} vs AC {mr.ap_ac_sub!r}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
