"""The HTML page of ``ssh-toolkit localize``: the error along the network's depth (one chart) and the table."""

from __future__ import annotations

import html
import math

import numpy as np

from .html import _figure, _kv_table, _page, _png, _table

_FLOOR = 1e-12  # exact zeros are drawn here on the log axis


def _depth_plot(loc) -> str:
    fig = _figure(11, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(1, len(loc.layers) + 1)
    y = np.array([d.scaled_max_abs if d.compared else np.nan for d in loc.layers], dtype=float)
    y = np.where(np.isfinite(y), np.maximum(y, _FLOOR), np.nan)
    cos = np.array([max(1.0 - d.cosine, _FLOOR) if d.compared and math.isfinite(d.cosine) else np.nan
                    for d in loc.layers], dtype=float)
    ax.semilogy(x, y, marker="o", ms=3, lw=1.2, label="max |ir - mxnet| / max |mxnet|")
    ax.semilogy(x, cos, marker="x", ms=3, lw=0.8, ls="--", label="1 - cosine")
    ax.axhline(loc.threshold, color="tab:red", lw=1, ls=":", label=f"threshold {loc.threshold:.1e}")
    if loc.first is not None:
        ax.axvline(loc.first + 1, color="tab:red", lw=1)
        ax.annotate(f"first over: {loc.layers[loc.first].node}", (loc.first + 1, loc.threshold),
                    xytext=(6, 12), textcoords="offset points", color="tab:red")
    step = max(1, len(x) // 40)
    ax.set_xticks(x[::step])
    ax.set_xticklabels([d.node for d in loc.layers][::step], rotation=90, fontsize=7)
    ax.set_xlabel("MXNet layer (node order)")
    ax.set_ylabel("difference")
    ax.set_title(f"{loc.model} vs mxnet, layer by layer ({loc.input_size}x{loc.input_size})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig, "scaled max abs difference and 1 - cosine along the network's depth")


def localize_html(loc) -> str:
    standin = loc.weights != "real"
    banner = (f'<p class="banner">Stand-in weights ({html.escape(loc.checkpoint_kind)}): these figures locate '
              f"a divergence in the converted graph; they say nothing of the real model's accuracy.</p>"
              if standin else "")
    facts = [("model", f"{loc.model} ({loc.precision})"), ("IR", loc.xml), ("image", loc.image),
             ("input size", loc.input_size), ("threshold (scaled max abs)", f"{loc.threshold:.1e}"),
             ("verdict", loc.verdict()), ("MXNet internals vs normal run", f"{loc.internals_check:.3e}"),
             ("IR finals with vs without extra outputs", f"{loc.final_drift:.3e}"),
             ("passes", loc.passes), ("peak memory (RSS)", f"{loc.peak_rss_mb:.0f} MB"),
             ("seconds", f"{loc.seconds:.1f}")]
    if loc.constants:
        facts.append(("constants feeding the flagged layer", "; ".join(c.describe() for c in loc.constants)))
    warnings = "".join(f"<p class='banner'>warning: {html.escape(w)}</p>" for w in loc.warnings)
    body = "\n".join([
        f"<h1>ssh-toolkit localize: {html.escape(loc.model)}</h1>", banner, warnings, _kv_table(facts),
        "<h2>Error along the depth</h2>", _depth_plot(loc),
        "<h2>Layers (MXNet node order)</h2>", _table(loc.to_frame()),
    ])
    return _page(f"localize {loc.model}", body)
