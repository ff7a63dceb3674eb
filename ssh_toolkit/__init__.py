"""ssh-toolkit: convert the SSH MXNet face detector to OpenVINO IR and validate it."""

import os as _os

# MXNet's CPU engine runs one OpenMP thread unless told otherwise (3.0 s vs 1.5 s per 640x640 forward on
# 2 cores). It reads the variable when mxnet is first imported, so set it before any module imports mxnet.
_os.environ.setdefault("OMP_NUM_THREADS", str(_os.cpu_count() or 1))

__version__ = "0.1.0"
