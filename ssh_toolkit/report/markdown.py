"""Records -> pandas DataFrames -> CSV / JSON / Markdown files, written atomically, with the run's metadata."""

from __future__ import annotations

import math
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..card import ModelCard
from ..fileio import atomic_dir, sha256_file, write_json, write_text
from ..run_record import REFERENCE_MODEL


def standin_banner(weights: str, kind: str, reference_map: float) -> str:
    """The sentence every report carries when the weights are not the published ones (``reference_map``: the
    card's published figure)."""
    if weights == "real":
        return "Weights: the published SSH checkpoint (real)."
    what = {"standin": "a seeded stand-in with the exact SSH architecture",
            "toy": "a toy detector with the SSH input/output contract"}.get(kind, kind)
    return (f"**STAND-IN WEIGHTS** ({what}): these figures test the toolchain, not the model. They are NOT the "
            f"accuracy of SSH; the published {reference_map:.2f} % mAP applies to the real checkpoint only.")


def versions() -> dict[str, str]:
    """Python, platform and the versions of the packages that make the numbers (read from package metadata:
    nothing is imported here, so MXNet is only ever started through runners/mxnet_import.py)."""
    from importlib import metadata

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist, key in (("numpy", "numpy"), ("pandas", "pandas"), ("mxnet", "mxnet"), ("opencv-python", "opencv")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:
        from openvino import get_version

        out["openvino"] = get_version()  # the runtime's full build string, e.g. 2026.4.1-22982-...
    except ImportError:
        pass
    return out


def run_metadata(card: ModelCard, weights: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": card.name,
        "card": str(card.path),
        "card_sha256": sha256_file(card.path),
        "weights": weights,
        "checkpoint_kind": kind,
        "note": standin_banner(weights, kind, card.reference_map),
        "versions": versions(),
        **extra,
    }


def format_float(v: float, nan: str = "nan") -> str:
    """How every table of the toolkit shows a float: 6 significant digits, scientific when tiny or huge."""
    if math.isnan(v):
        return nan
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
        return f"{v:.3e}"
    return f"{v:.6g}"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(df) -> str:
    """A GitHub-flavoured Markdown table (pandas' own needs the optional 'tabulate' package)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v.item() if hasattr(v, "item") else v) for v in row) + " |")
    return "\n".join(lines)


def write_tables(directory: str | Path, tables: Mapping[str, Any]) -> list[Path]:
    """Each DataFrame as ``<name>.csv`` and ``<name>.json`` (records)."""
    directory = Path(directory)
    written = []
    for name, df in tables.items():
        written.append(write_text(directory / f"{name}.csv", df.to_csv(index=False)))
        written.append(write_text(directory / f"{name}.json", df.to_json(orient="records", indent=2) + "\n"))
    return written


def write_report(directory: str | Path, tables: Mapping[str, Any], metadata: Mapping[str, Any],
                 markdown: str) -> Path:
    """Tables, ``metadata.json`` and ``report.md`` into ``directory``; returns the Markdown path."""
    directory = Path(directory)
    write_tables(directory, tables)
    write_json(directory / "metadata.json", dict(metadata))
    return write_text(directory / "report.md", markdown)


def parity_markdown(run, card: ModelCard, weights: str, kind: str) -> str:
    """The Markdown a person reads first for a ``compare`` run."""
    df = run.to_frame()
    verdict = "PASS" if run else "FAIL"
    lines = [
        f"# Numeric parity: MXNet vs IR ({card.name}) - {verdict}",
        "",
        standin_banner(weights, kind, card.reference_map),
        "",
        f"Images: {len(run.images)} at {run.input_size}x{run.input_size}. An output passes when "
        "|ir - mxnet| <= atol + rtol*|mxnet| everywhere and cosine >= min_cosine (tolerances from the card). "
        "median/p99 are histogram estimates (within 2.3 %, rounded up).",
        "",
        markdown_table(df[["test", "output", "shape", "max_abs", "mean_abs", "median_abs", "p99_abs", "max_rel",
                           "cosine", "psnr_db", "min_passing_atol", "atol", "passed", "reason"]]),
    ]
    if run.self_check:
        sc = run.self_check_frame()
        lines += ["", "## Self-check: IR fed RGB instead of BGR (wrong preprocessing)", "",
                  "This must fail; it shows the size of a channel-order bug next to the real differences.", "",
                  markdown_table(sc[["test", "output", "max_abs", "cosine", "min_passing_atol", "passed"]])]
    if run.routes:
        lines += ["", "## Native route vs Model Optimizer", "",
                  "The same images through the IR of each route, per output: the largest absolute difference "
                  "(0 = identical outputs).", "", markdown_table(run.routes_frame())]
    lines += ["", "Images:", ""] + [f"- {p}" for p in run.images]
    return "\n".join(lines) + "\n"


def write_parity_report(directory: str | Path, card: ModelCard, checkpoint, run, checked=None) -> Path:
    tables = {"parity": run.to_frame()}
    if run.self_check:
        tables["parity_self_check"] = run.self_check_frame()
    if run.routes:
        tables["native_vs_mo"] = run.routes_frame()
    meta = run_metadata(card, checkpoint.weights, checkpoint.kind, command="compare", input_size=run.input_size,
                        images=[str(p) for p in run.images], params_sha256=checkpoint.params_sha256,
                        passed=bool(run))
    # A folder the toolkit did not write is refused, never overwritten; so is one written meanwhile (``checked``).
    with atomic_dir(directory, kind="compare", checked=checked) as tmp:
        write_report(tmp, tables, meta, parity_markdown(run, card, checkpoint.weights, checkpoint.kind))
    return Path(directory) / "report.md"


def evaluation_markdown(summary, tables: Mapping[str, Any]) -> str:
    """The Markdown a person reads first for an ``evaluate`` run."""
    s = summary
    lines = [
        f"# Evaluation of {s.model} on WIDER FACE ({s.dataset.get('split', 'val')}): run {s.run_id}",
        "",
        s.note,
        "",
        f"Protocol: {s.protocol} (Open Model Zoo Accuracy Checker: retinaface adapter, per-stride NMS "
        f"{s.protocol_params['nms_threshold']} with pre-NMS top-{s.protocol_params['keep_top_k']}, rint, GT "
        f"clipped to {s.protocol_params['clip_annotation']:g}, faces outside heights "
        f"[{s.protocol_params['height_range'][0]:g}, {s.protocol_params['height_range'][1]:g}) ignored, "
        f"VOC all-point AP at IoU {s.protocol_params['overlap_threshold']}).",
        f"Images: {s.n_images} ({s.dataset.get('selection', 'all')}) from {s.dataset.get('root')}; input "
        f"{s.input_size}x{s.input_size}.",
        "",
        "## mAP",
        "",
        markdown_table(tables["metrics"]),
    ]
    if s.weights == "real":
        lines += ["", f"Published reference: {s.reference_map:.2f} % (full WIDER FACE val at 640x640)."]
    else:
        lines += ["", f"The published {s.reference_map:.2f} % applies to the real weights; it is not comparable "
                      "with these stand-in figures."]
    if REFERENCE_MODEL in s.map:
        drops = [f"{m}: {s.map[REFERENCE_MODEL] - v:+.4f} points" for m, v in s.map.items() if m != REFERENCE_MODEL]
        if drops:
            lines += ["", "mAP drop of each IR vs MXNet (positive = IR lower): " + "; ".join(drops) + "."]
    if "parity" in tables:
        lines += ["", "## Numeric parity of raw outputs (MXNet vs IR, whole dataset)", "",
                  markdown_table(tables["parity"][["test", "output", "max_abs", "mean_abs", "p99_abs", "cosine",
                                                   "psnr_db", "min_passing_atol", "atol", "passed",
                                                   "reason"]]),
                  "", "## Box match rate (share of MXNet detections the IR reproduces)", "",
                  markdown_table(tables["box_match"])]
    if "quantization" in tables:
        q = tables["quantization"]
        lines += ["", "## INT8 (ssh-toolkit quantize)", "", markdown_table(q)]
        for m, n in zip(q["model"], q["note"]):
            if n:
                lines += ["", f"**Note ({m}):** {n}; its mAP on these images is not an independent figure."]
    if "official" in tables:
        lines += ["", "## Official WIDER FACE AP (separate metric; NOT comparable with the mAP above)", "",
                  "Min-max normalised scores, 1000 thresholds, GT-free images skipped, Easy/Medium/Hard sets "
                  "from the official .mat lists.", "", markdown_table(tables["official"])]
    if "image_warnings" in tables:
        lines += ["", "## image_warnings: damaged images that decoded and were evaluated anyway", "",
                  "Their figures may be wrong (a truncated JPEG decodes with grey rows); `--strict-images` refuses "
                  "them.", "", markdown_table(tables["image_warnings"])]
    worst = tables["per_image"].sort_values("n_fp", ascending=False).head(10)
    lines += ["", "## Images with the most false positives", "", markdown_table(worst)]
    if s.dataset.get("skipped"):
        lines += ["", f"Skipped (missing or unreadable): {', '.join(s.dataset['skipped'])}"]
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in s.versions.items() if k != "platform")]
    if s.runtime:
        rt = s.runtime
        lines += [f"Runtime: {rt.get('device')} on {rt.get('cpu')} (flags that change results: "
                  f"{', '.join(rt.get('cpu_flags', [])) or 'none'}); an unpinned FP32 IR runs in "
                  f"{rt.get('default_exec_precision')} there by default."]
    return "\n".join(lines) + "\n"
