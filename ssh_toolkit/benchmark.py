"""``ssh-toolkit benchmark``: one table, a row per model variant, accuracy and speed measured in one run.

For every model ``evaluate`` runs (mxnet, ir-fp32, ir-fp16, ir-int8 at pinned f32, and the runtime's default on
this CPU: ir-fp32@bf16, ...): mAP on the chosen data under the card's protocol, the drop against MXNet, seconds
per image and images per second, and the speed-up over ir-fp32. Every model is inferred afresh (a throw-away
cache, never the workspace's), through the same runner and the same ``infer_many`` (OpenVINO: the async request
queue) that ``evaluate`` uses, image decoding and resizing included, as evaluate pays them.

Timing: *img/s* is the steady rate, between the first and the last finished image (compilation and the first
request's warm-up left out); *s/img* is its inverse; *latency* is the mean time one infer request took.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .card import ModelCard
from .convert import ConvertedModel
from .data.wider import open_wider
from .fileio import atomic_dir, check_replaceable
from .run_record import REFERENCE_MODEL, default_run_dir
from .workspace import Checkpoint, Workspace

BASE = "ir-fp32"  # the speed-up column is relative to this model
COLUMNS = ("model", "precision", "runs_in", "n_images", "map_percent", "drop_vs_mxnet", "s_per_img", "img_per_s",
           "latency_s", "speedup_vs_ir_fp32")


@dataclass(frozen=True)
class Timing:
    n_images: int
    img_per_s: float  # steady: between the first and the last finished image
    latency_s: float  # mean per-request latency the runner recorded

    @property
    def s_per_img(self) -> float:
        return 1.0 / self.img_per_s if self.img_per_s > 0 else math.nan


def steady_rate(stamps: Sequence[float]) -> float:
    """Images per second between the first and the last finished image (``nan`` with fewer than two)."""
    if len(stamps) < 2 or stamps[-1] <= stamps[0]:
        return math.nan
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


@dataclass
class Benchmark:
    run_dir: Path
    table: object  # pandas DataFrame, COLUMNS
    markdown: str


def benchmark(card: ModelCard, checkpoint: Checkpoint, irs: Sequence[ConvertedModel], data_root: str | Path,
              workspace: Workspace, *, input_size: int | None = None, limit: int | None = None,
              models: Sequence[str] | None = None, exec_precisions: Sequence[str] = ("f32", "default"),
              run_dir: str | Path | None = None, jobs: int = 0, progress: bool = True,
              say: Callable[[str], None] = print) -> Benchmark:
    """Measure every model on the first ``limit`` images of ``data_root``; write the table into a run folder."""
    import pandas as pd

    from .cache import RawCache
    from .evaluation import score_model
    from .inference import entry_spec, infer_missing, model_set, scan_images
    from .report.markdown import markdown_table, run_metadata, standin_banner, write_report

    size = card.resolve_input_size(input_size)
    if run_dir is not None:  # before any work; a folder of its own kind, never an evaluate run's
        checked = check_replaceable(run_dir, "benchmark")
    selected = model_set(card, checkpoint, irs, size, models, jobs=jobs, exec_precisions=exec_precisions)
    if run_dir is None:
        run_dir = default_run_dir(f"benchmark-{checkpoint.kind}-{size}")
        checked = check_replaceable(run_dir, "benchmark")
    run_dir = Path(run_dir)
    ds = open_wider(data_root).select(limit=limit)
    ds.check_images()
    images = scan_images([ds.image_path(im) for im in ds.images], progress=progress)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ssh-toolkit-benchmark-") as tmp:
        for m in selected:
            cache = RawCache(Path(tmp), m.key, entry_spec(card, size))
            stamps: list[float] = []
            infer_missing(card, m, images, cache, size, progress=progress,
                          on_stored=lambda i, st=stamps: st.append(time.perf_counter()))
            score = score_model(card, m, ds, images.keys, cache, size)
            t = Timing(len(images), steady_rate(stamps), float(score.seconds.mean()))
            rows.append({"model": m.name, "precision": m.precision.split("@")[0], "runs_in": m.exec_precision,
                         "n_images": t.n_images, "map_percent": score.result.map_percent,
                         "s_per_img": t.s_per_img, "img_per_s": t.img_per_s, "latency_s": t.latency_s})
            say(f"benchmark {m.name}: {t.img_per_s:.3f} img/s, mAP {score.result.map_percent:.4f} %")
    table = pd.DataFrame(rows)
    ref = table.loc[table.model == REFERENCE_MODEL, "map_percent"]
    table["drop_vs_mxnet"] = (float(ref.iloc[0]) - table.map_percent) if len(ref) else math.nan
    base = table.loc[table.model == BASE, "img_per_s"]
    table["speedup_vs_ir_fp32"] = (table.img_per_s / float(base.iloc[0])) if len(base) else math.nan
    table = table[list(COLUMNS)]
    meta = run_metadata(card, checkpoint.weights, checkpoint.kind, command="benchmark", input_size=size,
                        data_root=str(data_root), n_images=len(images))
    md = "\n".join([
        f"# Benchmark of {card.name}: run {run_dir.name}", "",
        standin_banner(checkpoint.weights, checkpoint.kind, card.reference_map), "",
        f"{len(images)} images of {data_root} at {size}x{size}; mAP under {card.protocol.name}. Each model inferred "
        f"afresh through evaluate's runners (OpenVINO: async request queue), decoding and resizing included; "
        f"img/s is the steady rate (first to last finished image), s/img its inverse, latency the mean infer "
        f"request time; speed-up over {BASE}.", "",
        format_table(table, markdown=True, markdown_table=markdown_table), "",
    ])
    with atomic_dir(run_dir, kind="benchmark", checked=checked) as tmp:
        write_report(tmp, {"benchmark": table}, meta, md)
    return Benchmark(run_dir, table, md)


def format_table(table, *, markdown: bool = False, markdown_table=None) -> str:
    """The table with rounded figures: as Markdown, or as aligned text for the terminal."""
    shown = table.copy()
    for col, fmt in (("map_percent", "{:.4f}"), ("drop_vs_mxnet", "{:+.4f}"), ("s_per_img", "{:.4f}"),
                     ("img_per_s", "{:.3f}"), ("latency_s", "{:.4f}"), ("speedup_vs_ir_fp32", "{:.2f}x")):
        shown[col] = [fmt.format(v) if isinstance(v, float) and math.isfinite(v) else "-" for v in shown[col]]
    if markdown:
        return markdown_table(shown)
    return shown.to_string(index=False)
