"""The one place the toolkit imports MXNet, with what MXNet must be told before its first import.

- ``OMP_NUM_THREADS``: MXNet's CPU engine runs one OpenMP thread unless told otherwise (3.0 s instead of 1.5 s
  per 640x640 forward on 2 cores). MXNet reads it when it is first imported, so it is set here, where MXNet is
  started, and never when ``ssh_toolkit`` is imported. A value the user set is kept.
- ``MXNET_SUBGRAPH_VERBOSE=0``: keeps "Subgraph backend MKLDNN is activated." off the user's terminal.
- ``numpy.bool``: mxnet 1.9.1 (the last release) maps dtypes with ``np.bool`` at import time; numpy removed that
  alias of the builtin ``bool`` in 1.24 (deprecated since 1.20), so ``import mxnet`` fails on numpy 1.26. It is
  set back to ``bool`` (exactly what it was) only when numpy lacks it; nothing else is patched. numpy 2 defines
  ``np.bool`` again (as ``np.bool_``) and is left alone.
"""

from __future__ import annotations

import os
from types import ModuleType


def import_mxnet() -> ModuleType:
    """``import mxnet`` after setting its start-up environment (see the module docstring)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    numpy_compat()
    import mxnet

    return mxnet


def numpy_compat() -> None:
    """``np.bool = bool`` when numpy lacks it (see the module docstring); nothing else."""
    import numpy as np

    # vars(): on numpy 1.24-1.26 even hasattr(np, "bool") goes through a FutureWarning-raising __getattr__.
    if "bool" not in vars(np):
        np.bool = bool  # type: ignore[attr-defined]
