"""The one place the toolkit imports MXNet, with what MXNet must be told before its first import.

- ``OMP_NUM_THREADS``: MXNet's CPU engine runs one OpenMP thread unless told otherwise (3.0 s instead of 1.5 s
  per 640x640 forward on 2 cores). MXNet reads it when it is first imported, so it is set here, where MXNet is
  started, and never when ``ssh_toolkit`` is imported. A value the user set is kept.
- ``MXNET_SUBGRAPH_VERBOSE=0``: keeps "Subgraph backend MKLDNN is activated." off the user's terminal.
"""

from __future__ import annotations

import os
from types import ModuleType


def import_mxnet() -> ModuleType:
    """``import mxnet`` after setting its start-up environment (see the module docstring)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    import mxnet

    return mxnet
