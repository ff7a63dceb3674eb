"""Pure numeric comparison of two models' raw outputs, per output, accumulated over any number of images.

An output passes when ``|test - ref| <= atol + rtol * |ref|`` holds everywhere and the cosine similarity is at
least ``min_cosine`` (tolerances from the card, per IR precision). The verdict and the reason for a failure are decided
here, once (:meth:`DiffAccumulator.compute`), and recorded with the run; the gate reads them. Plain relative difference is meaningless
where the reference is near zero (softmax probabilities of 1e-40), so ``max_rel`` only looks at elements with
``|ref| >= REL_FLOOR`` and is informational.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..card import ModelCard, Tolerance
from ..errors import BackendError
from ..model.outputs import RawOutputs

REL_FLOOR = 1e-3
# Quantiles over a whole dataset come from a log-spaced histogram of |diff|: 100 bins per decade from 1e-12 to
# 1e4, i.e. within 2.3 % of the exact value (the upper edge of the bin is reported, so never understated).
_EDGES = np.concatenate([[0.0], np.logspace(-12, 4, 1601)])


@dataclass(frozen=True)
class OutputDiff:
    name: str
    shape: tuple[int, ...]
    n_values: int
    max_abs: float
    mean_abs: float
    median_abs: float
    p99_abs: float
    max_rel: float
    cosine: float
    psnr_db: float
    min_passing_atol: float  # the smallest atol that would pass with this rtol
    tolerance: Tolerance
    passed: bool
    # Why it failed ("" when it passed): every criterion that failed, e.g. "shape mismatch: ...",
    # "non-finite values ...", "needs atol 1.2e-02 > 1.0e-02, exceeds it by 2.0e-03 ...", "cosine ... < ...".
    reason: str = ""

    def verdict_line(self) -> str:
        tol = self.tolerance
        head = "PASS" if self.passed else "FAIL"
        if self.reason:
            return f"{head} | {self.name} | {self.reason}"
        return (f"{head} | {self.name} | max_abs={self.max_abs:.3e} (needs atol>={self.min_passing_atol:.3e}, "
                f"atol={tol.atol:.1e} rtol={tol.rtol:.1e}) | cosine={self.cosine:.9f} (min {tol.min_cosine})")


@dataclass
class DiffAccumulator:
    """Running statistics of ``test - ref`` for one output."""

    name: str
    rtol: float
    shape: tuple[int, ...] | None = None
    n: int = 0
    sum_abs: float = 0.0
    sum_sq: float = 0.0
    dot: float = 0.0
    ref_sq: float = 0.0
    test_sq: float = 0.0
    max_abs: float = 0.0
    max_rel: float = 0.0
    min_atol: float = 0.0
    ref_min: float = math.inf
    ref_max: float = -math.inf
    problem: str = ""
    hist: np.ndarray = field(default_factory=lambda: np.zeros(len(_EDGES), np.int64))
    # When a list: one row per image that added values, (image, n, sum_abs, sum_sq, dot, ref_sq, test_sq), so
    # that runs over disjoint images can be joined exactly (:meth:`join`); the float sums depend on their order.
    rows: list | None = None

    SUMS = ("sum_abs", "sum_sq", "dot", "ref_sq", "test_sq")
    EXTREMES = ("max_abs", "min_atol", "max_rel", "ref_min", "ref_max")

    def update(self, ref: np.ndarray, test: np.ndarray, image: int = 0) -> "DiffAccumulator":
        if ref.shape != test.shape:
            self.problem = self.problem or f"shape mismatch: reference {ref.shape} vs test {test.shape}"
            return self
        self.shape = tuple(ref.shape)
        r = ref.astype(np.float64, copy=False).ravel()
        t = test.astype(np.float64, copy=False).ravel()
        if not (np.isfinite(r).all() and np.isfinite(t).all()):
            self.problem = self.problem or "non-finite values (NaN or inf) in an output"
            return self
        d = np.abs(t - r)
        self.add_sums(image, d.size, (float(d.sum()), float(np.dot(d, d)), float(np.dot(r, t)),
                                      float(np.dot(r, r)), float(np.dot(t, t))))
        if d.size:
            self.max_abs = max(self.max_abs, float(d.max()))
            self.min_atol = max(self.min_atol, float((d - self.rtol * np.abs(r)).max()))
            big = np.abs(r) >= REL_FLOOR
            if big.any():
                self.max_rel = max(self.max_rel, float((d[big] / np.abs(r[big])).max()))
            self.ref_min = min(self.ref_min, float(r.min()))
            self.ref_max = max(self.ref_max, float(r.max()))
            # bin i holds values in (_EDGES[i-1], _EDGES[i]]; bin 0 holds exact zeros.
            self.hist += np.bincount(np.searchsorted(_EDGES, d, side="left").clip(0, len(_EDGES) - 1),
                                     minlength=len(_EDGES))
        return self

    def add_sums(self, image: int, n: int, sums: tuple[float, ...]) -> None:
        """Add one image's count and float sums (in :attr:`SUMS` order), in image order."""
        self.n += n
        for name, value in zip(self.SUMS, sums):
            setattr(self, name, getattr(self, name) + value)
        if self.rows is not None:
            self.rows.append((image, n, *sums))

    def extremes(self) -> np.ndarray:
        return np.array([getattr(self, k) for k in self.EXTREMES], np.float64)

    @classmethod
    def join(cls, name: str, rtol: float, rows: np.ndarray, extremes: Sequence[np.ndarray],
             hists: Sequence[np.ndarray], shape: tuple[int, ...] | None, problem: str = "") -> "DiffAccumulator":
        """The accumulator of one pass over the union of disjoint image sets, exactly: ``rows`` (as recorded
        in :attr:`rows`, ``image`` being the position in the union) are added in image order, so the float sums
        are the same bits; maxima, minima and histogram counts do not depend on the order."""
        acc = cls(name, rtol, shape=shape, problem=problem)
        for row in rows[np.argsort(rows[:, 0], kind="stable")] if len(rows) else ():
            acc.add_sums(int(row[0]), int(row[1]), tuple(float(v) for v in row[2:]))
        for e in extremes:
            acc.max_abs, acc.min_atol, acc.max_rel = (max(getattr(acc, k), float(v)) for k, v in
                                                      zip(cls.EXTREMES[:3], e[:3]))
            acc.ref_min, acc.ref_max = min(acc.ref_min, float(e[3])), max(acc.ref_max, float(e[4]))
        for h in hists:
            acc.hist += np.asarray(h, np.int64)
        return acc

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """Non-empty bins of |diff|: (upper edge, count); an upper edge of 0 counts exact zeros."""
        nz = np.flatnonzero(self.hist)
        return _EDGES[nz], self.hist[nz]

    def quantile(self, q: float) -> float:
        if self.n == 0:
            return 0.0
        idx = int(np.searchsorted(np.cumsum(self.hist), math.ceil(q * self.n), side="left"))
        return float(_EDGES[min(idx, len(_EDGES) - 1)])

    def compute(self, tol: Tolerance) -> OutputDiff:
        """The statistics and the verdict under ``tol``, with the reason when it fails."""
        if self.ref_sq == 0 and self.test_sq == 0:
            cosine = 1.0
        elif self.ref_sq == 0 or self.test_sq == 0:
            cosine = 0.0
        else:
            cosine = self.dot / math.sqrt(self.ref_sq * self.test_sq)
        mse = self.sum_sq / self.n if self.n else 0.0
        peak = self.ref_max - self.ref_min if self.n else 0.0
        psnr = math.inf if mse == 0 else (10 * math.log10(peak * peak / mse) if peak > 0 else -math.inf)
        min_atol = max(0.0, self.min_atol)
        reason = verdict_reason(self.problem or ("" if self.n else "no values compared"), min_atol, cosine,
                                self.max_abs, tol)
        return OutputDiff(
            name=self.name, shape=self.shape or (), n_values=self.n, max_abs=self.max_abs,
            mean_abs=self.sum_abs / self.n if self.n else 0.0, median_abs=self.quantile(0.5),
            p99_abs=self.quantile(0.99), max_rel=self.max_rel, cosine=cosine, psnr_db=psnr,
            min_passing_atol=min_atol, tolerance=tol, passed=not reason, reason=reason,
        )


def verdict_reason(problem: str, min_passing_atol: float, cosine: float, max_abs: float, tol: Tolerance) -> str:
    """Why an output fails ``tol``: each failed criterion, "; "-joined; "" when it passes.

    ``problem`` (a shape mismatch, non-finite values, nothing compared) fails the output whatever the numbers.
    """
    reasons = [problem] if problem else []
    if not problem:
        if not min_passing_atol <= tol.atol:  # also catches NaN
            reasons.append(f"needs atol {min_passing_atol:.3e} > {tol.atol:.1e}, exceeds it by "
                           f"{min_passing_atol - tol.atol:.3e} (max_abs {max_abs:.3e}, rtol {tol.rtol:g})")
        if not cosine >= tol.min_cosine:
            reasons.append(f"cosine {cosine:.9f} < {tol.min_cosine}, short by {tol.min_cosine - cosine:.3e}")
    return "; ".join(reasons)


@dataclass(frozen=True)
class ParityResult:
    """All outputs of one reference/test pair; truthy iff every output passed."""

    reference: str
    test: str
    precision: str
    n_images: int
    diffs: tuple[OutputDiff, ...]

    def __bool__(self) -> bool:
        return all(d.passed for d in self.diffs)

    @property
    def failed(self) -> list[str]:
        return [d.name for d in self.diffs if not d.passed]

    def to_frame(self):
        import pandas as pd

        rows = []
        for d in self.diffs:
            rows.append({
                "reference": self.reference, "test": self.test, "precision": self.precision,
                "output": d.name, "shape": "x".join(map(str, d.shape)), "n_images": self.n_images,
                "max_abs": d.max_abs, "mean_abs": d.mean_abs, "median_abs": d.median_abs, "p99_abs": d.p99_abs,
                "max_rel": d.max_rel, "cosine": d.cosine, "psnr_db": d.psnr_db,
                "min_passing_atol": d.min_passing_atol, "atol": d.tolerance.atol, "rtol": d.tolerance.rtol,
                "min_cosine": d.tolerance.min_cosine, "passed": d.passed, "reason": d.reason,
            })
        return pd.DataFrame(rows)


class ParityAccumulator:
    """Compares ``test`` against ``ref`` output by output (matched by canonical name) over many images."""

    def __init__(self, card: ModelCard, precision: str, reference: str = "mxnet", test: str = "",
                 record: bool = False) -> None:
        self.card = card
        self.precision = precision
        self.reference = reference
        self.test = test or f"ir-{precision.lower()}"
        self.n_images = 0
        self.acc = {name: DiffAccumulator(name, card.tolerance(precision, name).rtol, rows=[] if record else None)
                    for name in card.output_names}

    def update(self, ref: RawOutputs, test: RawOutputs) -> "ParityAccumulator":
        for name, acc in self.acc.items():
            for side in (ref, test):
                if name not in side.arrays:
                    raise BackendError(f"{side.runner}: output {name!r} missing; it has {sorted(side.arrays)}")
            acc.update(ref[name], test[name], image=self.n_images)
        self.n_images += 1
        return self

    def compute(self) -> ParityResult:
        diffs = tuple(acc.compute(self.card.tolerance(self.precision, name)) for name, acc in self.acc.items())
        return ParityResult(self.reference, self.test, self.precision, self.n_images, diffs)


def compare_outputs(ref: RawOutputs, test: RawOutputs, card: ModelCard, precision: str) -> ParityResult:
    """One image: compare every output the card declares."""
    return ParityAccumulator(card, precision, ref.runner, test.runner).update(ref, test).compute()
