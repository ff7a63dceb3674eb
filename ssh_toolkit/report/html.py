"""Run folders -> one self-contained HTML page (plots as base64 PNG, no external resources), and side-by-side
comparison of several runs.

Usage::

    df, path = report_runs([Path("reports/runs/A")])              # writes reports/runs/A/report.html
    df, path = report_runs([Path("reports/runs/A"), Path("reports/runs/B")])   # writes a comparison page
    print(format_comparison(df).to_string())                       # compare_runs(): metrics x runs (+ delta)

Runs are read only through :mod:`.run_record` (summary.json and the CSV tables it documents). Every table but
summary.json is optional: a run of MXNet alone has no parity, an interrupted one may lack PR curves; the page
then says what is missing instead of failing. Plots are drawn with matplotlib's Agg canvas directly (no pyplot,
so the caller's backend is left alone).
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..fileio import listed_in_marker, write_text
from ..gate.baseline import comparability_differences
from ..run_record import REFERENCE_MODEL, RunSummary, order_models
from .markdown import format_float, standin_banner

REPORT_HTML = "report.html"
TABLES = ("metrics", "pr_curves", "parity", "parity_histograms", "box_match", "quantization")
_NEEDS = {"pr_curves": ("model", "recall", "precision"), "parity_histograms": ("model", "output", "upper_edge", "count")}

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;
 color:#222;line-height:1.4;padding:0 16px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:1.6em}
table.t{border-collapse:collapse;margin:8px 0;font-size:.88em}
table.t th,table.t td{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.t th{background:#f3f3f3}table.t td:first-child,table.t th:first-child{text-align:left}
.banner{background:#fff3cd;border:2px solid #d39e00;color:#5c4400;padding:12px 16px;margin:12px 0;
 font-size:1.1em;border-radius:4px}
.warn{background:#fdecea;border:1px solid #e0a3a0;padding:8px 12px;margin:8px 0}
.missing{color:#777;font-style:italic}
img.plot{max-width:100%;border:1px solid #eee}
details{margin:12px 0}summary{cursor:pointer;font-size:1.2em;font-weight:bold}
"""


# --------------------------------------------------------------------------------------------------------------
# Reading a run


@dataclass
class RunData:
    path: Path
    summary: RunSummary
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # optional tables that exist but could not be read

    @property
    def label(self) -> str:
        return self.summary.run_id or self.path.name


def load_run(run_dir: str | Path) -> RunData:
    """summary.json (required: InputDataError when missing or corrupt) and whichever tables exist."""
    run_dir = Path(run_dir)
    run = RunData(run_dir, RunSummary.load(run_dir))
    for name in TABLES:
        path = run_dir / f"{name}.csv"
        if not path.is_file():
            continue
        try:
            df = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue
        except (ValueError, OSError) as e:  # ParserError and UnicodeDecodeError are ValueErrors
            run.problems.append(f"{path.name}: could not be read ({' '.join(str(e).split())})")
            continue
        missing = [c for c in _NEEDS.get(name, ()) if c not in df.columns]
        if missing:
            run.problems.append(f"{path.name}: not used, column(s) {', '.join(missing)} missing")
            continue
        if not df.empty:
            run.tables[name] = df
    return run


def _order(models, *summaries: RunSummary) -> list[str]:
    """``models`` in the runs' order: MXNet, then the IRs by the precisions the runs recorded."""
    return order_models(models, [p for s in summaries for p in s.ir_precisions])


def _irs(s: RunSummary) -> list[str]:
    return [m for m in _order([*s.map, *s.parity, *s.box_match], s) if m != REFERENCE_MODEL]


# --------------------------------------------------------------------------------------------------------------
# Side-by-side table


def _run_column(s: RunSummary) -> dict[str, Any]:
    col: dict[str, Any] = {
        "weights": s.weights,
        "checkpoint_kind": s.checkpoint_kind,
        "input_size": s.input_size,
        "n_images": s.n_images,
        "dataset": f"{s.dataset.get('split', '?')} {str(s.dataset.get('identifiers_sha256', ''))[:12]}".strip(),
        "protocol": s.protocol,
        "created": s.created,
    }
    for m in _order(s.map, s):
        col[f"map[{m}]"] = float(s.map[m])
    mx = s.map.get(REFERENCE_MODEL)
    for ir in _irs(s):
        if mx is not None and ir in s.map:
            col[f"ir_vs_mxnet_drop[{ir}]"] = float(mx) - float(s.map[ir])
    for ir in _irs(s):
        outs = s.parity.get(ir)
        if outs:
            col[f"parity_max_abs[{ir}]"] = max(float(o.max_abs) for o in outs.values())
            col[f"parity_min_cosine[{ir}]"] = min(float(o.cosine) for o in outs.values())
            col[f"parity_passed[{ir}]"] = all(o.passed for o in outs.values())
    for ir in _irs(s):
        d = s.box_match.get(ir)
        if d is not None:
            col[f"box_match_rate[{ir}]"] = float(d.box_match_rate)
    for k, v in s.versions.items():
        col[f"version[{k}]"] = v
    return col


def _row_order(names: list[str], models: Sequence[str]) -> list[str]:
    groups = ("weights", "checkpoint_kind", "input_size", "n_images", "dataset", "protocol", "created", "map[",
              "ir_vs_mxnet_drop[", "parity_max_abs[", "parity_min_cosine[", "parity_passed[", "box_match_rate[",
              "version[")

    def key(name: str) -> tuple[int, int]:
        g = next((i for i, p in enumerate(groups) if name == p or (p.endswith("[") and name.startswith(p))),
                 len(groups))
        subject = name[name.find("[") + 1:-1] if "[" in name else ""
        return g, models.index(subject) if subject in models else len(models)

    return sorted(names, key=key)  # stable: unknown subjects keep their first-seen order


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not (isinstance(v, float) and math.isnan(v))


def _delta(a: Any, b: Any) -> Any:
    if _is_num(a) and _is_num(b):
        return b - a
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return ""
    return "" if a == b else "differs"


def _unique_labels(runs: Sequence[RunData]) -> list[str]:
    labels, seen = [], {}
    for r in runs:
        base = r.label
        seen[base] = seen.get(base, 0) + 1
        labels.append(base if seen[base] == 1 else f"{base} #{seen[base]}")
    return labels


def _compare_frame(runs: Sequence[RunData]) -> pd.DataFrame:
    labels = _unique_labels(runs)
    cols = {lab: _run_column(r.summary) for lab, r in zip(labels, runs)}
    models = _order([m for r in runs for m in (*r.summary.map, *r.summary.parity, *r.summary.box_match)],
                    *(r.summary for r in runs))
    names = _row_order(list(dict.fromkeys(k for c in cols.values() for k in c)), models)
    df = pd.DataFrame({lab: [c.get(n) for n in names] for lab, c in cols.items()}, index=names, dtype=object)
    df.index.name = "metric"
    if len(labels) == 2:
        a, b = labels
        df["delta"] = [_delta(x, y) for x, y in zip(df[a], df[b])]
    return df


_ROW_FORMATS = (("map[", ".3f"), ("ir_vs_mxnet_drop[", ".3f"), ("parity_max_abs[", ".3e"),
                ("parity_min_cosine[", ".9f"), ("box_match_rate[", ".4f"))


def format_comparison(df: pd.DataFrame) -> pd.DataFrame:
    """The same table as strings, each row in its own format (mAP .3f, max_abs .3e, cosine .9f, rate .4f;
    deltas signed), for printing (``format_comparison(df).to_string()``) and the HTML page."""
    out = pd.DataFrame(index=df.index, columns=df.columns, dtype=object)
    for name in df.index:
        spec = next((f for p, f in _ROW_FORMATS if str(name).startswith(p)), None)
        for col in df.columns:
            v = df.at[name, col]
            sign = "+" if col == "delta" else ""
            if v is None or (isinstance(v, float) and math.isnan(v)):
                out.at[name, col] = ""
            elif _is_num(v) and spec:
                out.at[name, col] = format(float(v), sign + spec)
            elif _is_num(v):
                out.at[name, col] = format(v, sign + "g") if isinstance(v, float) else format(v, sign + "d")
            else:
                out.at[name, col] = str(v)
    return out


def compare_runs(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """Rows: metrics (map[mxnet], map[ir-fp16], parity_max_abs[ir-fp16] = worst output, box_match_rate[...],
    n_images, weights, input_size, ...); columns: run ids; plus ``delta`` (second minus first; "differs" for a
    changed text value) when there are exactly two runs."""
    if not run_dirs:
        raise UsageError("compare_runs: give at least one run folder")
    return _compare_frame([load_run(d) for d in run_dirs])


# --------------------------------------------------------------------------------------------------------------
# Plots (Agg canvas, no pyplot)


def _figure(w: float = 7.5, h: float = 4.5, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _png(fig, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="plot" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _map_bar_plot(runs: Sequence[RunData], labels: Sequence[str]) -> str:
    fig = _figure()
    ax = fig.add_subplot()
    models = _order([m for r in runs for m in r.summary.map], *(r.summary for r in runs))
    width = 0.8 / max(len(runs), 1)
    for i, (r, lab) in enumerate(zip(runs, labels)):
        xs = [j + (i - (len(runs) - 1) / 2) * width for j, m in enumerate(models) if m in r.summary.map]
        ys = [float(r.summary.map[m]) for m in models if m in r.summary.map]
        bars = ax.bar(xs, ys, width * 0.95, label=lab if len(runs) > 1 else None)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    top = 112.0
    # The published figure belongs to the real weights: a stand-in's mAP is not comparable with it.
    real = [r.summary for r in runs if r.summary.weights == "real"]
    if real:
        ref = real[0].reference_map
        ax.axhline(ref, color="tab:red", linestyle="--", label=f"published {ref:.2f} % (real weights)")
        top = max(top, ref + 25)
    ax.set_xticks(range(len(models)), models)
    if len(models) > 5:  # both routes, bf16 and INT8 variants: upright names do not run into each other
        ax.tick_params(axis="x", labelrotation=90, labelsize=8)
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(0, top)
    ax.set_title("mAP per model")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper center", ncol=len(runs) + 1, fontsize=8)
    return _png(fig, "mAP per model")


def _pr_plot(runs: Sequence[RunData], labels: Sequence[str]) -> str | None:
    curves = [(r, lab) for r, lab in zip(runs, labels) if "pr_curves" in r.tables]
    if not curves:
        return None
    fig = _figure(7.5, 5.5)
    ax = fig.add_subplot()
    models = _order([m for r, _ in curves for m in r.tables["pr_curves"]["model"].astype(str)],
                    *(r.summary for r, _ in curves))
    styles = ("-", "--", ":", "-.")
    markers = ("o", "s", "^", "D", "v")
    for i, (r, lab) in enumerate(curves):
        # Colour and marker = model; line style = model for one run, run for several. Curves identical to one
        # already drawn in the same run are not drawn again (they would hide each other): that line's label
        # names every model it stands for.
        drawn: list[tuple[np.ndarray, np.ndarray, list[str], Any]] = []
        for m in _order(r.tables["pr_curves"]["model"].astype(str), r.summary):
            rec, prec = _pr_points(r.tables["pr_curves"], m)
            if rec.size == 0:
                continue
            same = next((d for d in drawn if np.array_equal(d[0], rec) and np.array_equal(d[1], prec)), None)
            if same is not None:
                same[2].append(m)
                continue
            k = models.index(m)
            line, = ax.plot(rec, prec, drawstyle="steps-post", color=f"C{k % 10}",
                            linestyle=styles[(k if len(runs) == 1 else i) % len(styles)],
                            marker=markers[k % len(markers)], markevery=[0, rec.size - 1], markersize=5)
            drawn.append((rec, prec, [m], line))
        for _, _, names, line in drawn:
            ap = r.summary.map.get(names[0])
            name = " = ".join(names) + (" (identical curves)" if len(names) > 1 else "")
            name = name if len(runs) == 1 else f"{lab}: {name}"
            name = f"{name}, mAP {ap:.2f} %" if ap is not None else name
            # Many identical models make one long name: wrapped, so the legend stays inside the figure.
            line.set_label(textwrap.fill(name, 70, break_on_hyphens=False))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return _png(fig, "precision-recall curves")


def _pr_points(df: pd.DataFrame, model: str) -> tuple[np.ndarray, np.ndarray]:
    """One model's curve from its first detection that recalls a face: the points before it have recall 0 and a
    precision of 0 (false positives, or ignored faces whose precision is undefined), which would draw a
    misleading vertical line up from precision 0."""
    part = df[df["model"].astype(str) == model].sort_values("recall", kind="stable")
    rec, prec = part["recall"].to_numpy(float), part["precision"].to_numpy(float)
    start = int(np.argmax(rec > 0)) if (rec > 0).any() else rec.size
    return rec[start:], prec[start:]


def _step_xy(upper: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bins given by their upper edges on a log-spaced grid (empty bins may be left out) -> the x, y of a step
    line, broken (NaN) over the gaps so that a count is never drawn across empty bins."""
    steps = upper[1:] / upper[:-1]
    steps = steps[steps > 1 + 1e-9]
    ratio = float(steps.min()) if steps.size else 10 ** 0.01  # neighbouring bins of the grid
    lower = upper / ratio
    gap = np.concatenate([[False], lower[1:] > upper[:-1] * (1 + 1e-6)])
    xs, ys = [], []
    for lo, up, c, g in zip(lower, upper, counts, gap):
        if g:
            xs.append(np.nan)
            ys.append(np.nan)
        xs += [lo, up]
        ys += [c, c]
    return np.array(xs), np.array(ys)


def _hist_plot(run: RunData) -> str | None:
    df = run.tables.get("parity_histograms")
    if df is None:
        return None
    df = df[(df["upper_edge"] > 0) & (df["count"] > 0)]
    if df.empty:
        return None
    outputs = list(dict.fromkeys(df["output"].astype(str)))
    ncol = 2 if len(outputs) > 1 else 1
    nrow = math.ceil(len(outputs) / ncol)
    from matplotlib.ticker import LogLocator, NullLocator

    # No layout engine: constrained layout measures every log tick label and takes seconds here.
    fig = _figure(11, 2.6 * nrow + 0.6, layout=None)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=1 - 0.75 / (2.6 * nrow + 0.6), hspace=0.55,
                        wspace=0.18)
    axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
    parity = run.tables.get("parity")
    for ax, out in zip(axes, outputs):
        part = df[df["output"].astype(str) == out]
        for m in _order(part["model"].astype(str), run.summary):
            h = part[part["model"].astype(str) == m].sort_values("upper_edge")
            x, y = _step_xy(h["upper_edge"].to_numpy(float), h["count"].to_numpy(float))
            line, = ax.plot(x, y, linewidth=1, label=m)
            if parity is not None and {"test", "output", "atol"} <= set(parity.columns):
                atol = parity[(parity["test"].astype(str) == m) & (parity["output"].astype(str) == out)]["atol"]
                if len(atol) and float(atol.iloc[0]) > 0:
                    ax.axvline(float(atol.iloc[0]), color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(numticks=7))
            axis.set_minor_locator(NullLocator())
        ax.set_title(out, fontsize=9)
        ax.set_xlabel("|ir - mxnet|", fontsize=8)
        ax.set_ylabel("count", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    for ax in axes[len(outputs):]:
        ax.set_visible(False)
    fig.suptitle("|output difference| per output (dotted: atol from the card; exact zeros not shown)", fontsize=10)
    return _png(fig, "histograms of absolute output differences")


# --------------------------------------------------------------------------------------------------------------
# HTML pieces


def _fmt_float(v: float) -> str:
    return format_float(v, nan="")


def _table(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_html(index=index, border=0, classes="t", float_format=_fmt_float, na_rep="", escape=True)


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="t">{body}</table>'


def _missing(what: str) -> str:
    return f'<p class="missing">{html.escape(what)}</p>'


def _banner(s: RunSummary) -> str:
    if s.weights == "real":
        return ""
    note = s.note or standin_banner(s.weights, s.checkpoint_kind, s.reference_map)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(note))
    return f'<div class="banner">{text}</div>'


def _summary_section(run: RunData) -> str:
    s = run.summary
    ds = s.dataset
    rows: list[tuple[str, Any]] = [
        ("run", s.run_id), ("created", s.created), ("model card", f"{s.model} (sha256 {s.card_sha256[:12]})"),
        ("weights", f"{s.weights} ({s.checkpoint_kind})"), ("input size", f"{s.input_size}x{s.input_size}"),
        ("images", s.n_images),
        ("dataset", ", ".join(f"{k}={v}" for k, v in ds.items())),
        ("protocol", s.protocol),
        ("protocol parameters", ", ".join(f"{k}={v}" for k, v in s.protocol_params.items())),
        ("published mAP", f"{s.reference_map:.2f} % (real weights, full dataset)"),
        ("versions", ", ".join(f"{k} {v}" for k, v in s.versions.items())),
    ]
    if s.runtime:
        rt = s.runtime
        rows.append(("runtime", f"{rt.get('device')} on {rt.get('cpu')}; flags that change results: "
                                f"{', '.join(rt.get('cpu_flags', [])) or 'none'}; default precision of an unpinned "
                                f"FP32 IR: {rt.get('default_exec_precision')}"))
    mx = s.map.get(REFERENCE_MODEL)
    maps = pd.DataFrame([{
        "model": m, "precision": s.precisions.get(m, ""), "mAP %": float(s.map[m]),
        "drop vs mxnet": (float(mx) - float(s.map[m])) if mx is not None and m != REFERENCE_MODEL else float("nan"),
    } for m in _order(s.map, s)])
    return "<h2>Summary</h2>" + _kv_table(rows) + (_table(maps) if not maps.empty else _missing("No mAP recorded."))


def _parity_frame(run: RunData) -> pd.DataFrame | None:
    if "parity" in run.tables:
        df = run.tables["parity"]
        keep = [c for c in ("test", "precision", "output", "shape", "max_abs", "mean_abs", "p99_abs", "cosine",
                            "min_passing_atol", "atol", "min_cosine", "passed", "reason", "problem")
                if c in df.columns]
        return df[keep]
    if run.summary.parity:
        return pd.DataFrame([{"test": m, "output": o, **vars(p)} for m, outs in run.summary.parity.items()
                             for o, p in outs.items()])
    return None


def _box_match_frame(run: RunData) -> pd.DataFrame | None:
    if "box_match" in run.tables:
        return run.tables["box_match"]
    if run.summary.box_match:  # also a run folder of summary format 1 (detection_parity.csv is not read)
        return pd.DataFrame([{"model": m, **vars(d)} for m, d in run.summary.box_match.items()])
    return None


def _run_sections(run: RunData, level: int = 2, with_plots: bool = True) -> str:
    h = f"h{level}"
    parts = [_summary_section(run).replace("<h2>", f"<{h}>").replace("</h2>", f"</{h}>")]
    for p in run.problems:
        parts.append(f'<p class="warn">{html.escape(p)}</p>')
    label = [run.label]
    if with_plots:
        parts.append(f"<{h}>mAP per model</{h}>" + _map_bar_plot([run], label))
        pr = _pr_plot([run], label)
        parts.append(f"<{h}>Precision-recall</{h}>" + (pr or _missing("No precision-recall curves in this run "
                                                                         "(pr_curves.csv missing).")))
    parts.append(f"<{h}>Numeric parity (MXNet vs IR)</{h}>")
    parity = _parity_frame(run)
    if parity is None:
        parts.append(_missing("No numeric parity in this run (only MXNet was evaluated, or parity.csv is missing)."))
    else:
        parts.append(_table(parity))
        hist = _hist_plot(run)
        parts.append(hist or _missing("No |difference| histograms (parity_histograms.csv missing)."))
    parts.append(f"<{h}>Box match rate (share of MXNet detections the IR reproduces)</{h}>")
    det = _box_match_frame(run)
    parts.append(_table(det) if det is not None else _missing("No box match rate in this run."))
    if (quantization := run.tables.get("quantization")) is not None:  # how the INT8 IR was made
        parts.append(f"<{h}>INT8 (ssh-toolkit quantize)</{h}>" + _table(quantization))
        for m, note in zip(quantization["model"], quantization["note"].fillna("")):
            if note:
                parts.append(f'<p class="warn">{html.escape(f"{m}: {note}")}</p>')
    parts.append(f"<{h}>Per-model metrics</{h}>")
    metrics = run.tables.get("metrics")
    parts.append(_table(metrics) if metrics is not None else _missing("metrics.csv missing; mAP in the summary."))
    return "\n".join(parts)


GENERATOR = '<meta name="generator" content="ssh-toolkit">'  # how a page we wrote is known again


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{GENERATOR}<title>{html.escape(title)}'
            f"</title><style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


def check_report_target(path: str | Path) -> None:
    """UsageError unless ``path`` may be written as an HTML report: absent, or a page ssh-toolkit wrote (it
    carries :data:`GENERATOR`, or its folder's marker lists it). Any other file is never overwritten."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; --out expects the path of an HTML file")
    if not (path.exists() or path.is_symlink()):
        return
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        head = b""
    if GENERATOR.encode() not in head and not listed_in_marker(path):
        raise UsageError(f"{path}: exists and is not a report written by ssh-toolkit; not overwritten: choose "
                         f"another --out file or move it away")


def _write_page(path: Path, page: str) -> Path:
    check_report_target(path)  # again: the file may have appeared while the page was rendered
    return write_text(path, page)


def render_html(run_dirs: Sequence[str | Path]) -> str:
    """One run: its full report. Several: banners, the side-by-side table, shared mAP and PR charts, then each
    run's own sections (collapsible)."""
    if not run_dirs:
        raise UsageError("render_html: give at least one run folder")
    return _render([load_run(d) for d in run_dirs])


def _render(runs: Sequence[RunData]) -> str:
    if len(runs) == 1:
        run = runs[0]
        s = run.summary
        title = f"{s.model}: evaluation run {s.run_id}"
        return _page(title, f"<h1>{html.escape(title)}</h1>\n{_banner(s)}\n{_run_sections(run)}")
    labels = _unique_labels(runs)
    parts = [f"<h1>{html.escape(runs[0].summary.model)}: comparison of {len(runs)} runs</h1>"]
    for r, lab in zip(runs, labels):
        b = _banner(r.summary)
        if b:
            parts.append(b.replace('<div class="banner">',
                                   f'<div class="banner"><strong>{html.escape(lab)}</strong>: ', 1))
    first = runs[0].summary
    for r, lab in zip(runs[1:], labels[1:]):
        diffs = comparability_differences(first, r.summary)
        if diffs:
            parts.append(f'<p class="warn">{html.escape(labels[0])} and {html.escape(lab)} are not directly '
                         f"comparable: {html.escape('; '.join(diffs))}.</p>")
    df = _compare_frame(runs)
    parts.append("<h2>Side by side</h2>" + _table(format_comparison(df).reset_index()))
    if len(runs) == 2:
        parts.append(f"<p>delta = {html.escape(labels[1])} minus {html.escape(labels[0])}.</p>")
    parts.append("<h2>mAP per model</h2>" + _map_bar_plot(runs, labels))
    pr = _pr_plot(runs, labels)
    parts.append("<h2>Precision-recall</h2>" + (pr or _missing("No precision-recall curves in these runs.")))
    for r, lab in zip(runs, labels):
        parts.append(f"<details><summary>Run {html.escape(lab)} ({html.escape(str(r.path))})</summary>"
                     f"{_run_sections(r, level=3, with_plots=False)}</details>")
    return _page(f"{first.model}: comparison of {', '.join(labels)}", "\n".join(parts))


def write_html_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """``<run_dir>/report.html`` (or ``out``), written atomically; only over nothing or a report the toolkit wrote."""
    path = Path(out) if out else Path(run_dir) / REPORT_HTML
    check_report_target(path)
    return _write_page(path, render_html([run_dir]))


def default_comparison_path(run_dirs: Sequence[str | Path]) -> Path:
    dirs = [Path(d).resolve() for d in run_dirs]
    name = "-vs-".join(d.name for d in dirs) if len(dirs) <= 3 else f"{dirs[0].name}-and-{len(dirs) - 1}-more"
    return dirs[0].parent / f"compare-{name}.html"


def report_runs(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> tuple[pd.DataFrame, Path]:
    """What ``ssh-toolkit report RUN_DIR [RUN_DIR...]`` does: the side-by-side table (print it with
    ``format_comparison(df).to_string()``) and the HTML written: ``<run>/report.html`` for one run, else ``out`` or
    ``<runs folder>/compare-<A>-vs-<B>.html``."""
    if not run_dirs:
        raise UsageError("report: give at least one run folder")
    runs = [load_run(d) for d in run_dirs]  # InputDataError (exit 2) on a missing or corrupt summary
    if len(runs) == 1:
        path = Path(out) if out else Path(run_dirs[0]) / REPORT_HTML
    else:
        path = Path(out) if out else default_comparison_path(run_dirs)
    check_report_target(path)  # before the plots are drawn
    df = _compare_frame(runs)
    return df, _write_page(path, _render(runs))
