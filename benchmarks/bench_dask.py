"""The Dask executor against the local executor on the same images, in one run, and Dask's per-task overhead.

1. Inference phase exactly as evaluate runs it (``inference.run_models``, empty cache: read, decode, resize,
   infer, cache), once with the local executor (one process, OpenVINO and MXNet on every core) and once with the
   Dask executor on a 2-worker ``LocalCluster`` (one core each: the cores split between the workers), on the
   stand-in SSH checkpoint (the real architecture) at 640x640. The Dask figure includes shipping the model files
   and loading the models on the workers; the cluster's start-up is reported separately (paid once per
   command). Both caches must be identical, bit for bit.
2. Per-task overhead of the cluster: no-op tasks submitted as the executor submits its batches (a window of
   twice the worker threads, ``as_completed``), each carrying the bytes of a batch of images in and the raw
   outputs of a batch out; and empty tasks. This is the figure the wall-time estimate in docs/cluster.md uses.

Timings on a shared 2-core machine swing between runs: compare the ratio of one run.

    python benchmarks/bench_dask.py [--kind standin|toy] [--input-size 640] [--images 16] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ssh_toolkit import load_card
from ssh_toolkit.convert import convert
from ssh_toolkit.data.sample import make_sample
from ssh_toolkit.data.wider import open_wider
from ssh_toolkit.executors import LocalExecutor
from ssh_toolkit.executors.cluster import IMAGES_PER_TASK, DaskExecutor, local_cluster
from ssh_toolkit.inference import model_set, run_models, scan_images
from ssh_toolkit.pipeline import synthesize_checkpoint
from ssh_toolkit.workspace import Workspace


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def _noop(payload: bytes, out_bytes: int) -> bytes:
    return bytes(out_bytes)


def _warm() -> None:
    """Import the runtimes on a worker (what any command pays once per worker process, like the start-up)."""
    import openvino  # noqa: F401

    from ssh_toolkit.runners.mxnet_import import import_mxnet

    import_mxnet()


def task_overhead(client, n_tasks: int, in_bytes: int, out_bytes: int, window: int) -> float:
    """Seconds per task of ``n_tasks`` no-op tasks with ``in_bytes`` in and ``out_bytes`` out."""
    from distributed import as_completed

    payload = os.urandom(in_bytes)
    start = time.perf_counter()
    pending = as_completed()
    submitted = 0

    def submit():
        nonlocal submitted
        if submitted < n_tasks:
            pending.add(client.submit(_noop, payload, out_bytes, pure=False))
            submitted += 1

    for _ in range(window):
        submit()
    for f in pending:
        f.result()
        f.release()
        submit()
    return (time.perf_counter() - start) / n_tasks


def same_caches(a: Path, b: Path) -> bool:
    fa = sorted(p.relative_to(a) for p in a.rglob("*.npz"))
    if fa != sorted(p.relative_to(b) for p in b.rglob("*.npz")) or not fa:
        return False
    for rel in fa:
        with np.load(a / rel) as x, np.load(b / rel) as y:
            if any(not np.array_equal(x[k], y[k]) for k in x.files if k != "__seconds"):
                return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", choices=("standin", "toy"), default="standin")
    p.add_argument("--input-size", type=int, default=640)
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--models", nargs="+", default=["mxnet", "ir-fp32"])
    p.add_argument("--tasks", type=int, default=200, help="no-op tasks for the per-task overhead")
    p.add_argument("--workspace", type=Path, help="keep the workspace here (reused when it exists)")
    args = p.parse_args(argv)

    root = args.workspace or Path(tempfile.mkdtemp(prefix="bench-dask-"))
    card = load_card()
    size = args.input_size
    ws = Workspace(root)
    print(f"load before: {load_average()}", flush=True)
    ck = synthesize_checkpoint(card, ws, args.kind)
    irs = [convert(card, ck, ws, "FP32", size)]
    if not (ws.sample_data / "wider_face_split").is_dir():
        make_sample(ws.sample_data, seed=0, n_images=args.images)
    ds = open_wider(ws.sample_data).select(limit=args.images)
    images = scan_images([ds.image_path(im) for im in ds.images], progress=False)
    models = model_set(card, ck, irs, size, args.models, exec_precisions=("f32",))
    n = len(images)

    def run(executor, name: str) -> tuple[float, Path]:
        w = Workspace(root / f"run-{name}")
        shutil.rmtree(w.cache, ignore_errors=True)
        start = time.perf_counter()
        run_models(card, models, images, w, size, progress=False, executor=executor)
        return time.perf_counter() - start, w.cache

    local_s, local_cache = run(LocalExecutor(), "local")
    print(f"local executor: {n} images x {len(models)} models in {local_s:.1f} s", flush=True)

    start = time.perf_counter()
    cluster = local_cluster(2)
    from distributed import Client

    with Client(cluster) as warm:
        warm.run(_warm)
    startup = time.perf_counter() - start
    try:
        with DaskExecutor(cluster.scheduler_address) as ex:
            dask_s, dask_cache = run(ex, "dask")
            print(f"dask executor (2 workers x 1 core): {dask_s:.1f} s (+ {startup:.1f} s cluster start-up)",
                  flush=True)
            identical = same_caches(local_cache, dask_cache)
            client = ex.client
            window = 2 * ex.threads()
            raw_bytes = sum(f.stat().st_size for f in dask_cache.rglob("*.npz")) // (n * len(models))
            jpeg_bytes = sum(pth.stat().st_size for pth in images.paths) // n
            empty = task_overhead(client, args.tasks, 0, 0, window)
            loaded = task_overhead(client, args.tasks, IMAGES_PER_TASK * jpeg_bytes, IMAGES_PER_TASK * raw_bytes,
                                   window)
    finally:
        cluster.close()

    ratio = dask_s / local_s
    tasks = len(models) * -(-n // IMAGES_PER_TASK)
    names = [m.name for m in models]
    print()
    print(f"# bench_dask: {args.kind} at {size}x{size}, {n} images, models {', '.join(names)}, "
          f"{IMAGES_PER_TASK} images per task ({tasks} tasks)")
    print(f"python {sys.version.split()[0]}, load after: {load_average()}")
    print()
    print("| executor | wall s | s per image per model | vs local |")
    print("|---|---|---|---|")
    print(f"| local (1 process, all cores) | {local_s:.1f} | {local_s / n / len(models):.3f} | 1.00 |")
    print(f"| dask, 2 workers x 1 core | {dask_s:.1f} | {dask_s / n / len(models):.3f} | {ratio:.2f} |")
    print()
    print(f"cluster start-up (LocalCluster, 2 processes, runtimes imported on the workers): {startup:.1f} s")
    print(f"per-task overhead, empty task: {empty * 1000:.1f} ms")
    print(f"per-task overhead, {IMAGES_PER_TASK} images in ({IMAGES_PER_TASK * jpeg_bytes / 1e3:.0f} KB) and their "
          f"raw outputs out ({IMAGES_PER_TASK * raw_bytes / 1e6:.2f} MB): {loaded * 1000:.1f} ms")
    print(f"outputs identical to the local executor's, bit for bit: {identical}")
    print(f"dask within 15 % of local: {'yes' if ratio <= 1.15 else 'no'} ({(ratio - 1) * 100:+.1f} %)")
    if not args.workspace:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
