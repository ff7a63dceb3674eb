"""DiffAccumulator.join: accumulators of disjoint image sets joined give the bits of one pass over the union."""

from __future__ import annotations

import numpy as np

from ssh_toolkit.card import Tolerance
from ssh_toolkit.metric.parity import DiffAccumulator


def _images(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ref = rng.normal(size=(1, 4, 7, 7)).astype(np.float32) * rng.uniform(0.1, 1e3)
        test = ref + rng.normal(scale=1e-4, size=ref.shape).astype(np.float32)
        out.append((ref, test))
    return out


def test_joining_interleaved_shards_gives_the_single_pass_bit_for_bit():
    images = _images(10)
    single = DiffAccumulator("o", 1e-3)
    for ref, test in images:
        single.update(ref, test)
    parts = []
    for k in range(3):  # shard k+1/3: positions k, k+3, ...
        acc = DiffAccumulator("o", 1e-3, rows=[])
        positions = list(range(k, len(images), 3))
        for j, p in enumerate(positions):
            acc.update(*images[p], image=j)
        rows = np.array(acc.rows, np.float64)
        rows[:, 0] = [positions[int(j)] for j in rows[:, 0]]  # local index -> position in the union
        parts.append((rows, acc.extremes(), acc.hist))
    # Given in another order than the shards' on purpose: join sorts the rows by position.
    joined = DiffAccumulator.join("o", 1e-3, np.concatenate([p[0] for p in parts[::-1]]),
                                  [p[1] for p in parts], [p[2] for p in parts], single.shape)
    for field in ("n", *DiffAccumulator.SUMS, *DiffAccumulator.EXTREMES):
        assert getattr(joined, field) == getattr(single, field), field
    assert np.array_equal(joined.hist, single.hist)
    tol = Tolerance(atol=1e-3, rtol=1e-3, min_cosine=0.999)
    assert joined.compute(tol) == single.compute(tol)
