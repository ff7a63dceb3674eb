"""INT8 against ir-fp32, both at pinned f32, on the stand-in SSH checkpoint at 640x640, measured in one run.

1. speed: the standin (the exact SSH architecture, seeded weights) converted to FP32 by Model Optimizer and
   quantized by ``ssh-toolkit quantize`` (NNCF 3.4 accuracy control, calibration on the generated sample);
   then ``ssh-toolkit benchmark``'s measurement (evaluate's runners, OpenVINO async queue, decoding included)
   of ir-fp32 and ir-int8 on the same images; prints the img/s ratio (target >= 3.5x on the 2-core EPYC with
   avx512_vnni this project is built on). The standin's mAP is meaningless (random weights).
2. accuracy: the toy detector quantized the same way on the 14-image sample; its INT8 mAP drop vs MXNet and
   vs ir-fp32 (the toy is the stand-in whose mAP means something on the sample).

Timings on a shared 2-core machine swing ~2x between runs: compare the ratio of one run, not absolute figures.

    python benchmarks/bench_int8.py [--input-size 640] [--images 14] [--workspace DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from ssh_toolkit import load_card
from ssh_toolkit.benchmark import benchmark, format_table
from ssh_toolkit.convert import convert
from ssh_toolkit.data.sample import make_sample
from ssh_toolkit.pipeline import synthesize_checkpoint
from ssh_toolkit.quantize import quantize
from ssh_toolkit.workspace import Workspace


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" on {os.cpu_count()} CPUs"


def prepare(root: Path, kind: str, size: int, n_images: int):
    card = load_card()
    ws = Workspace(root / kind)
    ck = synthesize_checkpoint(card, ws, kind)
    data = make_sample(ws.sample_data, seed=0, n_images=n_images)
    fp32 = convert(card, ck, ws, "FP32", size)
    q = quantize(card, ck, ws, data, input_size=size, progress=False, say=lambda m: print(f"  {kind}: {m}"))
    print(f"  {kind}: quantized in {q.seconds:.1f} s; validation drop {q.achieved_drop:.3f} points; "
          f"{q.n_int8_layers} ops with INT8 inputs, {len(q.float_layers)} put back in float", flush=True)
    return card, ws, ck, data, [fp32, q]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input-size", type=int, default=640)
    p.add_argument("--images", type=int, default=14, help="sample images (speed and mAP)")
    p.add_argument("--workspace", type=Path, help="keep the workspaces here")
    args = p.parse_args(argv)
    import openvino

    print(f"bench_int8: OpenVINO {openvino.__version__}, load average {load_average()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as tmp:
        root = args.workspace or Path(tmp)
        os.chdir(root)  # the run folders go under <root>/reports/runs
        card, ws, ck, data, irs = prepare(root, "standin", args.input_size, args.images)
        speed = benchmark(card, ck, irs, data, ws, input_size=args.input_size, models=["ir-fp32", "ir-int8"],
                          exec_precisions=("f32",), progress=False, say=lambda m: None).table
        card, ws, ck, data, irs = prepare(root, "toy", args.input_size, args.images)
        acc = benchmark(card, ck, irs, data, ws, input_size=args.input_size, models=["mxnet", "ir-fp32", "ir-int8"],
                        exec_precisions=("f32",), progress=False, say=lambda m: None).table
    print(f"\n== stand-in {args.input_size}x{args.input_size}, {args.images} images, pinned f32 "
          f"(load average now {load_average()})")
    print(format_table(speed))
    print(f"\n== toy on the {args.images}-image sample (mAP)")
    print(format_table(acc))
    fp32 = speed.set_index("model").loc["ir-fp32"]
    int8 = speed.set_index("model").loc["ir-int8"]
    toy = acc.set_index("model")
    print(f"\nINT8 vs ir-fp32 (stand-in, f32): {int8.img_per_s / fp32.img_per_s:.2f}x img/s "
          f"({fp32.s_per_img:.3f} -> {int8.s_per_img:.3f} s/img); target >= 3.5x")
    print(f"toy INT8 mAP drop: {toy.loc['ir-int8'].drop_vs_mxnet:+.4f} points vs mxnet "
          f"({toy.loc['ir-int8'].map_percent:.4f} vs {toy.loc['mxnet'].map_percent:.4f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
