"""Pure per-layer comparison of two models' intermediate tensors (``ssh-toolkit localize``).

Each layer's reference tensor (MXNet) and test tensor (the IR) give the largest absolute difference, the largest
relative difference (where ``|ref| >= REL_FLOOR``, as in :mod:`.parity`), the cosine similarity, and the
**scaled max abs**: the largest absolute difference divided by the layer's largest ``|ref|``. Activations of
different layers have very different ranges, so the scaled figure is what is held against the threshold; the
first layer (in the reference's node order) over it is where the two models part.

Tensors are compared in chunks of float64, so a 100 MB activation never needs several 200 MB temporaries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .parity import REL_FLOOR

CHUNK = 1 << 20  # elements per float64 chunk
NOT_IN_TEST = "no matching tensor in the IR"


@dataclass(frozen=True)
class LayerDiff:
    """One layer: ``problem`` is "" when compared, else why it could not be (or failed outright)."""

    node: str
    op: str
    shape: tuple[int, ...]
    max_abs: float = math.nan
    max_rel: float = math.nan
    cosine: float = math.nan
    peak: float = math.nan  # largest |ref|
    problem: str = ""

    @property
    def compared(self) -> bool:
        return not self.problem

    @property
    def scaled_max_abs(self) -> float:
        """``max_abs / peak``; 0 when both are 0, inf when only the reference is all zeros."""
        if not self.compared:
            return math.nan
        if self.max_abs == 0:
            return 0.0
        return self.max_abs / self.peak if self.peak > 0 else math.inf

    def over(self, threshold: float) -> bool:
        """Diverged: its scaled max abs exceeds ``threshold``, or the tensors could not be compared although the
        IR has the layer (shape mismatch, NaN or inf). A layer the IR lacks is never flagged."""
        if self.problem == NOT_IN_TEST:
            return False
        if self.problem:
            return True
        return not self.scaled_max_abs <= threshold  # NaN counts as over

    def as_row(self) -> dict:
        return {"node": self.node, "op": self.op, "shape": "x".join(map(str, self.shape)),
                "max_abs": self.max_abs, "max_rel": self.max_rel, "cosine": self.cosine, "peak": self.peak,
                "scaled_max_abs": self.scaled_max_abs, "problem": self.problem}


def missing_layer(node: str, op: str, shape: Sequence[int]) -> LayerDiff:
    return LayerDiff(node, op, tuple(shape), problem=NOT_IN_TEST)


def compare_layer(node: str, op: str, ref: np.ndarray, test: np.ndarray, chunk: int = CHUNK) -> LayerDiff:
    """Statistics of ``test - ref`` for one layer, computed chunk by chunk in float64."""
    shape = tuple(int(s) for s in ref.shape)
    if ref.shape != test.shape:
        return LayerDiff(node, op, shape, problem=f"shape mismatch: reference {ref.shape} vs test {test.shape}")
    r_all, t_all = ref.reshape(-1), test.reshape(-1)
    max_abs = max_rel = peak = 0.0
    dot = rr = tt = 0.0
    for start in range(0, r_all.size, chunk):
        r = r_all[start:start + chunk].astype(np.float64)
        t = t_all[start:start + chunk].astype(np.float64)
        if not (np.isfinite(r).all() and np.isfinite(t).all()):
            return LayerDiff(node, op, shape, problem="non-finite values (NaN or inf)")
        d = np.abs(t - r)
        a = np.abs(r)
        max_abs = max(max_abs, float(d.max()))
        peak = max(peak, float(a.max()))
        big = a >= REL_FLOOR
        if big.any():
            max_rel = max(max_rel, float((d[big] / a[big]).max()))
        dot += float(r @ t)
        rr += float(r @ r)
        tt += float(t @ t)
    if rr == 0 and tt == 0:
        cosine = 1.0
    elif rr == 0 or tt == 0:
        cosine = 0.0
    else:
        cosine = dot / math.sqrt(rr * tt)
    return LayerDiff(node, op, shape, max_abs, max_rel, cosine, peak)


def first_over(layers: Sequence[LayerDiff], threshold: float) -> int | None:
    """Index of the first layer over ``threshold`` (see :meth:`LayerDiff.over`), or None."""
    return next((i for i, d in enumerate(layers) if d.over(threshold)), None)
