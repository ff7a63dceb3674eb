"""One table per model variant, measured in one run: what each way of running the model costs and gives.

(``ssh-toolkit benchmark`` gives the same table for one checkpoint, INT8 included; this script puts the stand-in's
speed beside the toy's mAP.) For every model evaluate can run (mxnet, ir-fp32, ir-fp16 at pinned f32, and the
runtime's default on this CPU, ``ir-fp32@bf16`` / ``ir-fp16@bf16`` where it is bf16):

* seconds per image and images per second of the inference phase exactly as evaluate runs it
  (:func:`ssh_toolkit.inference.infer_missing`, empty cache: decode, resize, infer, cache), on the stand-in
  SSH checkpoint (the real architecture: the speed figure that matters), *all-in* (compile included) and
  *steady* (between the first and the last finished image);
* mAP on the generated sample with the toy detector (the stand-in's weights are random: its mAP means
  nothing), and the drop against MXNet;
* speed-up over ir-fp32 (pinned f32), from the steady figures of this same run.

Timings on a shared 2-core machine swing ~2x between runs: compare the ratios of one run, not absolute figures
across runs.

    python benchmarks/bench_variants.py [--input-size 640] [--images 8] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from ssh_toolkit import load_card
from ssh_toolkit.benchmark import steady_rate
from ssh_toolkit.cache import RawCache
from ssh_toolkit.convert import convert_all
from ssh_toolkit.data.sample import make_sample
from ssh_toolkit.data.wider import open_wider
from ssh_toolkit.evaluation import score_model
from ssh_toolkit.inference import infer_missing, model_set, scan_images
from ssh_toolkit.pipeline import synthesize_checkpoint
from ssh_toolkit.workspace import Workspace

EXEC = ("f32", "default")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def measure(root: Path, kind: str, size: int, n_images: int, with_map: bool) -> dict[str, dict[str, float]]:
    card = load_card()
    ws = Workspace(root / kind)
    ck = synthesize_checkpoint(card, ws, kind)
    irs = convert_all(card, ck, ws, input_size=size)
    data = make_sample(ws.sample_data, seed=0, n_images=max(n_images, 14) if with_map else n_images)
    ds = open_wider(data)
    if not with_map:
        ds = ds.select(limit=n_images)
    images = scan_images([ds.image_path(im) for im in ds.images], progress=False)
    rows: dict[str, dict[str, float]] = {}
    for m in model_set(card, ck, irs, size, exec_precisions=EXEC):
        cache = RawCache(ws.cache, m.key)
        stamps: list[float] = []
        start = time.perf_counter()
        n = infer_missing(card, m, images, cache, size, progress=False,
                          on_stored=lambda i, st=stamps: st.append(time.perf_counter()))
        wall = time.perf_counter() - start
        steady = steady_rate(stamps)  # the product's own measure (ssh-toolkit benchmark)
        row = {"n": n, "all_in_s_per_img": wall / n, "steady_img_per_s": steady}
        if with_map:
            row["map"] = score_model(card, m, ds, images.keys, cache, size).result.map_percent
        rows[m.name] = row
        print(f"  {kind} {m.name}: {n} images in {wall:.1f} s", flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input-size", type=int, default=640)
    p.add_argument("--images", type=int, default=8, help="images for the speed figures (stand-in)")
    p.add_argument("--workspace", type=Path, help="keep the workspaces here (must not exist)")
    args = p.parse_args(argv)
    import openvino

    print(f"bench_variants: OpenVINO {openvino.__version__}, load average {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-variants-") as tmp:
        root = args.workspace or Path(tmp)
        speed = measure(root, "standin", args.input_size, args.images, with_map=False)
        acc = measure(root, "toy", args.input_size, 14, with_map=True)
    base = speed["ir-fp32"]["steady_img_per_s"]
    ref_map = acc["mxnet"]["map"]
    head = ("model", "mAP toy (sample)", "drop vs mxnet", "s/img all-in", "img/s steady", "speed-up vs ir-fp32")
    rows = [head]
    for name, s in speed.items():
        a = acc.get(name, {})
        rows.append((name, f"{a.get('map', float('nan')):.4f}", f"{ref_map - a.get('map', float('nan')):+.4f}",
                     f"{s['all_in_s_per_img']:.3f}", f"{s['steady_img_per_s']:.3f}",
                     f"{s['steady_img_per_s'] / base:.2f}x"))
    widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
    print(f"\n== per model variant (stand-in {args.input_size}x{args.input_size}, {args.images} images for speed; "
          f"toy on the 14-image sample for mAP; load average now {load_average()})")
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
