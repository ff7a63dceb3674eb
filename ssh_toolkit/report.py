"""Records -> pandas DataFrames -> CSV / JSON / Markdown files, written atomically, with the run's metadata."""

from __future__ import annotations

import math
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from .card import ModelCard
from .fileio import sha256_file, write_json, write_text


def standin_banner(weights: str, kind: str) -> str:
    """The sentence every report carries when the weights are not the published ones."""
    if weights == "real":
        return "Weights: the published SSH checkpoint (real)."
    what = {"standin": "a seeded stand-in with the exact SSH architecture",
            "toy": "a toy detector with the SSH input/output contract"}.get(kind, kind)
    return (f"**STAND-IN WEIGHTS** ({what}): these figures test the toolchain, not the model. They are NOT the "
            f"accuracy of SSH; the published 84.80 % mAP applies to the real checkpoint only.")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for mod in ("numpy", "pandas", "mxnet", "cv2"):
        m = sys.modules.get(mod)
        if m is None:
            try:
                m = __import__(mod)
            except ImportError:
                continue
        out[mod if mod != "cv2" else "opencv"] = getattr(m, "__version__", "?")
    try:
        from openvino.runtime import get_version

        out["openvino"] = get_version()
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
        "note": standin_banner(weights, kind),
        "versions": versions(),
        **extra,
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
            return f"{v:.3e}"
        return f"{v:.6g}"
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
        standin_banner(weights, kind),
        "",
        f"Images: {len(run.images)} at {run.input_size}x{run.input_size}. An output passes when "
        "|ir - mxnet| <= atol + rtol*|mxnet| everywhere and cosine >= min_cosine (tolerances from the card). "
        "median/p99 are histogram estimates (within 2.3 %, rounded up).",
        "",
        markdown_table(df[["test", "output", "shape", "max_abs", "mean_abs", "median_abs", "p99_abs", "max_rel",
                           "cosine", "psnr_db", "min_passing_atol", "atol", "passed"]]),
    ]
    if run.self_check:
        sc = run.self_check_frame()
        lines += ["", "## Self-check: IR fed RGB instead of BGR (wrong preprocessing)", "",
                  "This must fail; it shows the size of a channel-order bug next to the real differences.", "",
                  markdown_table(sc[["test", "output", "max_abs", "cosine", "min_passing_atol", "passed"]])]
    lines += ["", "Images:", ""] + [f"- {p}" for p in run.images]
    return "\n".join(lines) + "\n"


def write_parity_report(directory: str | Path, card: ModelCard, checkpoint, run) -> Path:
    tables = {"parity": run.to_frame()}
    if run.self_check:
        tables["parity_self_check"] = run.self_check_frame()
    meta = run_metadata(card, checkpoint.weights, checkpoint.kind, command="compare", input_size=run.input_size,
                        images=[str(p) for p in run.images], params_sha256=checkpoint.params_sha256,
                        passed=bool(run))
    return write_report(directory, tables, meta, parity_markdown(run, card, checkpoint.weights, checkpoint.kind))
