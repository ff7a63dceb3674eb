"""The reference ranking: numpy's classic introsort ``argsort``, whatever the CPU and numpy version.

The Accuracy Checker ranks candidates with ``np.argsort`` (numpy's default, unstable quicksort), so the order
of *equal* scores is whatever that algorithm produces, and it decides which of two tied boxes survives
top-k and NMS, and which of two tied detections is matched first. From numpy 1.25 on, ``argsort`` of float32 /
float64 on a CPU with AVX-512 dispatches to a SIMD sort (x86-simd-sort) that orders ties differently from the
classic introsort that numpy <= 1.24 (the Accuracy Checker's numpy 1.23.5) runs everywhere. numpy has no such
SIMD sort for ``longdouble``: sorting an exact ``longdouble`` copy runs the classic introsort, giving the
reference order on any CPU (checked against the Accuracy Checker on numpy 1.23.5 in tests/test_oracle_ac.py).
"""

from __future__ import annotations

import numpy as np


def reference_argsort(values: np.ndarray) -> np.ndarray:
    """``np.argsort(values)`` as numpy <= 1.24 computes it (ties, NaN included), on any CPU and numpy."""
    values = np.asarray(values)
    if values.dtype.kind == "f":
        values = values.astype(np.longdouble)  # exact for float16/32/64; keeps the classic code path
    return np.argsort(values)
