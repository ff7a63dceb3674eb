"""The baseline file: the figures of an accepted run (``baselines/<card>-<weights>-<size>.json``), how it is
made from a run, loaded and validated, saved, and when a run and a baseline can be compared at all.

A baseline that is not comparable with the run (other checkpoint kind, input size, protocol or dataset) is an
input error (:class:`InputDataError`, exit 2), not a regression.

Format 2: box match under ``box_match`` (``box_match_rate``), weights ``standin``. Format 1 (``detection_parity``
with ``match_rate``, weights ``stand-in``) is still read, upgraded on load.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import GateFailure, InputDataError, UsageError
from ..fileio import write_json
from ..run_record import RunSummary
from .result import GateResult

BASELINE_FORMAT = 2


def _plain(obj: Any) -> Any:
    """JSON round trip: tuples become lists, so in-memory and loaded records compare equal."""
    return json.loads(json.dumps(obj, default=str))


@dataclass(frozen=True)
class Baseline:
    """The figures of an accepted run, kept in ``reports/baselines/<name>.json`` (see :meth:`to_json`)."""

    created: str
    source_run: str  # JSON key "from_run" (the name of the constructor below)
    model: str  # the card's name
    weights: str  # real | standin
    checkpoint_kind: str  # real | standin | toy
    input_size: int
    protocol: str
    protocol_params: dict[str, Any]
    dataset: dict[str, Any]  # split, n_images, identifiers_sha256, skipped (no machine-specific root)
    n_images: int
    precisions: dict[str, str]  # model -> precision
    map: dict[str, float]  # model -> mAP in percent
    parity: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # IR -> output -> stats
    box_match: dict[str, dict[str, float]] = field(default_factory=dict)  # IR -> box_match_rate, matched, n_ref
    card_sha256: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    format: int = BASELINE_FORMAT
    runtime: dict[str, Any] = field(default_factory=dict)  # device, cpu, cpu_flags, default_exec_precision

    REQUIRED = ("created", "from_run", "model", "weights", "checkpoint_kind", "input_size", "protocol",
                "protocol_params", "dataset", "map")

    @classmethod
    def from_run(cls, summary: RunSummary) -> "Baseline":
        dataset = {k: v for k, v in summary.dataset.items() if k != "root"}
        return cls(
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source_run=summary.run_id,
            model=summary.model,
            weights=summary.weights,
            checkpoint_kind=summary.checkpoint_kind,
            input_size=int(summary.input_size),
            protocol=summary.protocol,
            protocol_params=_plain(summary.protocol_params),
            dataset=_plain(dataset),
            n_images=int(summary.n_images),
            precisions=dict(summary.precisions),
            map={m: float(v) for m, v in summary.map.items()},
            parity={ir: {o: {"max_abs": float(s.max_abs), "min_passing_atol": float(s.min_passing_atol),
                             "cosine": float(s.cosine)} for o, s in outs.items()}
                    for ir, outs in summary.parity.items()},
            box_match={ir: {"box_match_rate": float(d.box_match_rate), "matched": int(d.matched),
                            "n_ref": int(d.n_ref)} for ir, d in summary.box_match.items()},
            card_sha256=summary.card_sha256,
            versions=dict(summary.versions), runtime=_plain(summary.runtime),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "created": self.created, "from_run": self.source_run, "model": self.model,
            "weights": self.weights, "checkpoint_kind": self.checkpoint_kind, "input_size": self.input_size,
            "protocol": self.protocol, "protocol_params": self.protocol_params, "dataset": self.dataset,
            "n_images": self.n_images, "precisions": self.precisions, "map": self.map, "parity": self.parity,
            "box_match": self.box_match, "card_sha256": self.card_sha256,
            "versions": self.versions, "runtime": self.runtime,
        }

    def save(self, path: str | Path) -> Path:
        """Write (atomic) to ``path``; an existing file there is replaced only if it is a valid baseline."""
        check_overwritable(path)
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "Baseline":
        path = Path(path)
        if path.is_dir():
            raise InputDataError(f"{path}: is a folder; --baseline expects a baseline JSON file")
        if not path.is_file():
            raise InputDataError(f"{path}: baseline not found; record one with 'ssh-toolkit gate RUN_DIR "
                                 f"--baseline {path} --update-baseline'")
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))  # a BOM some editors write is no error
        except json.JSONDecodeError as e:
            raise InputDataError(f"{path}: not a valid baseline: not JSON (line {e.lineno}: {e.msg})") from None
        except (OSError, UnicodeDecodeError) as e:
            raise InputDataError(f"{path}: cannot read the baseline ({e})") from None
        if not isinstance(data, dict):
            raise InputDataError(f"{path}: not a valid baseline: expected a JSON object")
        missing = [k for k in cls.REQUIRED if k not in data]
        if missing:
            raise InputDataError(f"{path}: not a valid baseline: missing key(s) {', '.join(missing)}")
        fmt = data.get("format", 1)
        if not isinstance(fmt, int) or fmt > BASELINE_FORMAT:
            raise InputDataError(f"{path}: baseline format {fmt!r} is newer than this ssh-toolkit reads "
                                 f"({BASELINE_FORMAT})")

        def bad(key: str, what: str) -> InputDataError:
            return InputDataError(f"{path}: not a valid baseline: key '{key}': {what}")

        m = data["map"]
        if not isinstance(m, dict):
            raise bad("map", f"expected model name -> mAP in percent, got {_json_kind(m)}")
        if not m:
            raise bad("map", "empty; a baseline holds the mAP of at least one model")
        for model, v in m.items():
            if not _is_number(v) or not math.isfinite(v):
                raise bad(f"map.{model}", f"expected a finite mAP in percent, got {v!r}")
        for key in ("protocol_params", "dataset"):
            if not isinstance(data[key], dict):
                raise bad(key, "expected a JSON object")
        if not isinstance(data["input_size"], int) or isinstance(data["input_size"], bool):
            raise bad("input_size", f"expected an integer, got {data['input_size']!r}")
        if fmt < 2:  # older vocabulary
            data = {**data, "weights": "standin" if data["weights"] == "stand-in" else data["weights"]}
            old = data.pop("detection_parity", {})
            if isinstance(old, dict):
                old = {ir: {("box_match_rate" if k == "match_rate" else k): v for k, v in d.items()}
                       if isinstance(d, dict) else d for ir, d in old.items()}
            data["box_match"] = old
            fmt = BASELINE_FORMAT
        for key in ("parity", "box_match", "precisions", "versions", "runtime"):
            if not isinstance(data.get(key, {}), dict):
                raise bad(key, "expected a JSON object")
        # The figures the gate reads: IR -> {stat: number} (box match), IR -> output -> {stat: number} (parity).
        for ir, stats in data.get("box_match", {}).items():
            _check_stats(stats, f"box_match.{ir}", bad, finite=True)
        for ir, outs in data.get("parity", {}).items():
            if not isinstance(outs, dict):
                raise bad(f"parity.{ir}", f"expected a JSON object, got {outs!r}")
            for out, stats in outs.items():
                _check_stats(stats, f"parity.{ir}.{out}", bad, finite=False)
        n_images = data.get("n_images", data["dataset"].get("n_images", 0))
        if not isinstance(n_images, int) or isinstance(n_images, bool) or n_images < 0:
            raise bad("n_images", f"expected a count (an integer >= 0), got {n_images!r}")
        return cls(
            created=str(data["created"]), source_run=str(data["from_run"]), model=str(data["model"]),
            weights=str(data["weights"]), checkpoint_kind=str(data["checkpoint_kind"]),
            input_size=data["input_size"], protocol=str(data["protocol"]),
            protocol_params=data["protocol_params"], dataset=data["dataset"], n_images=int(n_images),
            precisions=data.get("precisions", {}), map={k: float(v) for k, v in m.items()},
            parity=data.get("parity", {}), box_match=data.get("box_match", {}),
            card_sha256=str(data.get("card_sha256", "")), versions=data.get("versions", {}), format=fmt,
            runtime=data.get("runtime", {}),
        )


def check_overwritable(path: str | Path) -> None:
    """UsageError unless ``path`` may be written as a baseline: absent, or a valid baseline (which is then
    replaced). Any other file (``--baseline ~/notes.txt`` by mistake) is never overwritten."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder; --baseline expects a baseline JSON file")
    if not (path.exists() or path.is_symlink()):
        return
    try:
        Baseline.load(path)
    except InputDataError as e:
        reason = str(e).removeprefix(f"{path}: ")
        raise UsageError(f"{path}: exists and is not a baseline ssh-toolkit can read ({reason}); not overwritten: "
                         f"choose another --baseline file or move it away") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)  # numpy floats too


def _json_kind(v: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null", bool: "a boolean"}.get(type(v), repr(v))


def _check_stats(stats: Any, key: str, bad: Callable[[str, str], InputDataError], *, finite: bool) -> None:
    """``stats`` is ``{name: number}``; with ``finite``, NaN and infinities are refused too."""
    if not isinstance(stats, dict):
        raise bad(key, f"expected a JSON object, got {stats!r}")
    for k, v in stats.items():
        if not _is_number(v):
            raise bad(f"{key}.{k}", f"expected a number, got {v!r}")
        if finite and not math.isfinite(v):
            raise bad(f"{key}.{k}", f"expected a finite number, got {v!r}")


def _identity(rec: RunSummary | Baseline) -> dict[str, Any]:
    """What must be equal for two sets of figures to be compared."""
    ds = rec.dataset or {}
    return {
        "model": rec.model,
        "weights": rec.weights,
        "checkpoint_kind": rec.checkpoint_kind,
        "input_size": rec.input_size,
        "n_images": rec.n_images,
        "protocol": rec.protocol,
        "protocol_params": _plain(rec.protocol_params),
        "dataset.identifiers_sha256": ds.get("identifiers_sha256"),
        # The ground truth itself: a sample regenerated with another seed keeps its file names. (The images'
        # bytes are recorded but not compared: another libjpeg encodes the same sample differently.)
        "dataset.annotations_sha256": ds.get("annotations_sha256"),
        "dataset.n_images": ds.get("n_images"),
    }


def comparability_differences(a: RunSummary | Baseline, b: RunSummary | Baseline) -> list[str]:
    """``["input_size 640 vs 128", "protocol_params.nms_threshold 0.3 vs 0.4", ...]``; empty when comparable."""
    ia, ib = _identity(a), _identity(b)
    out = []
    for key in ia:
        va, vb = ia[key], ib[key]
        if va == vb:
            continue
        if key == "protocol_params" and isinstance(va, dict) and isinstance(vb, dict):
            for k in sorted(set(va) | set(vb)):
                if va.get(k) != vb.get(k):
                    out.append(f"protocol_params.{k} {_short(va.get(k, '(absent)'))} vs "
                               f"{_short(vb.get(k, '(absent)'))}")
        else:
            out.append(f"{key} {_short(va)} vs {_short(vb)}")
    return out


def _short(v: Any) -> str:
    s = str(v)
    return s[:12] + "..." if isinstance(v, str) and len(s) == 64 else s  # sha256 digests


def check_comparable(current: RunSummary, baseline: Baseline, where: str = "baseline") -> None:
    diffs = comparability_differences(baseline, current)
    if diffs:
        raise InputDataError(
            f"{where} (from run {baseline.source_run}) and run {current.run_id} are not comparable: "
            f"{'; '.join(diffs)} (baseline vs run); record a baseline for this setup with --update-baseline")




def write_baseline(summary: RunSummary, gate_result: GateResult, path: str | Path) -> Path:
    """Record ``summary`` as the baseline at ``path`` (atomic). Refuses when the run's own checks failed."""
    if gate_result.run_id != summary.run_id:
        raise UsageError(f"write_baseline: the gate result is for run {gate_result.run_id}, not {summary.run_id}")
    bad = gate_result.failed_in_run
    if bad:
        names = ", ".join(c.name for c in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise GateFailure(f"refusing to record a baseline from run {summary.run_id}: {len(bad)} of its in-run "
                          f"checks failed ({names}); {path} left unchanged")
    if not summary.map:
        raise UsageError(f"refusing to record a baseline from run {summary.run_id}: it has no mAP")
    return Baseline.from_run(summary).save(path)


def update_notes(summary: RunSummary, path: str | Path) -> tuple[str, ...]:
    """What replacing the baseline at ``path`` with ``summary`` changes, as short sentences (for the log)."""
    path = Path(path)
    check_overwritable(path)  # before any note: a file that is not a baseline is never replaced
    if not path.exists():
        return (f"{path}: no baseline yet, recording run {summary.run_id}",)
    old = Baseline.load(path)
    diffs = comparability_differences(old, summary)
    notes = [f"{path}: replacing the baseline from run {old.source_run} ({old.created})"]
    if diffs:
        notes.append(f"the setup changes: {'; '.join(diffs)} (old vs new)")
    for m in _models_of(old.map, summary.map):
        a, b = old.map.get(m), summary.map.get(m)
        if a is None or b is None:
            notes.append(f"mAP[{m}]: {'new' if a is None else 'removed'}")
        else:
            notes.append(f"mAP[{m}]: {a:.3f} -> {b:.3f} ({b - a:+.3f})")
    return tuple(notes)


def _models_of(*maps: Mapping[str, float]) -> list[str]:
    return list(dict.fromkeys(m for d in maps for m in d))
