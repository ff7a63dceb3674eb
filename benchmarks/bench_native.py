"""Native conversion time against Model Optimizer's, measured in one run on the same checkpoint.

For each precision (FP32, FP16) of the stand-in SSH checkpoint (the exact architecture) at 640x640:

* Model Optimizer: ``convert(..., force=True)`` wall time (the legacy environment's subprocess, as ``convert``
  runs it; the environment already exists), and Model Optimizer's own time from its record;
* native: ``convert(..., route="native", force=True)`` wall time (read the params, translate, save), and the
  split between translating and saving;
* the largest absolute difference between the two IRs' outputs on one sample image at pinned f32 (expected 0).

Timings on a shared 2-core machine swing ~2x between runs: compare the ratios of one run, not absolute figures
across runs.

    python benchmarks/bench_native.py [--input-size 640] [--rounds 1] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ssh_toolkit import load_card
from ssh_toolkit.convert import convert
from ssh_toolkit.data.sample import make_sample
from ssh_toolkit.data.wider import open_wider, read_image
from ssh_toolkit.model.preprocess import resize, to_tensor
from ssh_toolkit.native.translate import Preprocess, translate_files
from ssh_toolkit.pipeline import synthesize_checkpoint
from ssh_toolkit.workspace import Workspace


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def outputs(xml: Path, tensor: np.ndarray) -> dict[str, np.ndarray]:
    import openvino as ov

    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return {min(o.get_names()).removesuffix(":0"): v for o, v in compiled({0: tensor}).items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input-size", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=1, help="conversions per route and precision (median shown)")
    ap.add_argument("--workspace", type=Path, help="where the checkpoint and IRs go [default: a temporary folder]")
    args = ap.parse_args(argv)
    card = load_card()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(args.workspace or Path(tmp))
        ck = synthesize_checkpoint(card, ws, "standin")
        data = open_wider(make_sample(ws.sample_data, seed=0, n_images=1))
        image = resize(read_image(data.image_path(data.images[0])), args.input_size).image
        tensor = to_tensor(image, card.preprocess["ir"])
        print(f"stand-in SSH checkpoint (exact architecture, seeded weights), input {args.input_size}x"
              f"{args.input_size}, {args.rounds} round(s); load {load_average()}")
        rows = []
        for precision in card.precisions:
            convert(card, ck, ws, precision, args.input_size)  # creates the legacy environment if needed (untimed)
            mo_wall, mo_own, native_wall = [], [], []
            for _ in range(args.rounds):
                start = time.perf_counter()
                mo = convert(card, ck, ws, precision, args.input_size, force=True)
                mo_wall.append(time.perf_counter() - start)
                mo_own.append(mo.seconds)
                start = time.perf_counter()
                native = convert(card, ck, ws, precision, args.input_size, force=True, route="native")
                native_wall.append(time.perf_counter() - start)
            start = time.perf_counter()
            translate_files(ck.symbol_path, ck.params_path, input_shape=(1, 3, args.input_size, args.input_size),
                            preprocess=Preprocess.from_mo_args(card.mo_args, card.input.name),
                            outputs=card.output_names)
            translate_s = time.perf_counter() - start
            a, b = outputs(mo.xml, tensor), outputs(native.xml, tensor)
            diff = max(float(np.abs(a[n].astype(np.float64) - b[n]).max()) for n in card.output_names)
            rows.append((precision, statistics.median(mo_wall), statistics.median(mo_own),
                         statistics.median(native_wall), translate_s, diff))
        print()
        print("| precision | Model Optimizer wall s | (MO subprocess s) | native wall s | (translate s) | "
              "speed-up | max abs diff of outputs |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for p, mw, mo_s, nw, tr, diff in rows:
            print(f"| {p} | {mw:.2f} | {mo_s:.2f} | {nw:.2f} | {tr:.2f} | {mw / nw:.0f}x | {diff:g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
