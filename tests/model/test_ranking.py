"""reference_argsort: numpy's classic argsort order (ties, NaN) on numpy 1.26 with AVX-512, checked against the
numpy 1.23.5 of the legacy environment (the Accuracy Checker's)."""

import subprocess

import numpy as np
import pytest

from ssh_toolkit.model.ranking import reference_argsort

CODE = """
import sys, numpy as np
a = np.load(sys.argv[1])
np.save(sys.argv[2], np.stack([np.argsort(a), np.argsort(-a)]))
"""


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_reference_argsort_equals_numpy_1_23_argsort(mo_env, tmp_path):
    rng = np.random.default_rng(7)
    for dtype, n in ((np.float32, 17), (np.float32, 12800), (np.float64, 200_000)):
        a = (np.floor(rng.random(n) * 5) / 5).astype(dtype)
        a[rng.random(n) < 0.01] = np.nan
        np.save(tmp_path / "a.npy", a)
        subprocess.run([str(mo_env.python), "-c", CODE, str(tmp_path / "a.npy"), str(tmp_path / "o.npy")],
                       check=True)
        theirs = np.load(tmp_path / "o.npy")
        np.testing.assert_array_equal(reference_argsort(a), theirs[0])
        np.testing.assert_array_equal(reference_argsort(-a), theirs[1])
        assert np.array_equal(np.sort(a[reference_argsort(a)]), np.sort(a), equal_nan=True)
