"""MXNet's start-up environment is set where MXNet is imported, never by importing the toolkit."""

import os
import subprocess
import sys

import pytest


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MXNET_SUBGRAPH_VERBOSE")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_importing_the_toolkit_changes_no_environment():
    out = _run("import os, ssh_toolkit, ssh_toolkit.cli, ssh_toolkit.evaluation\n"
               "print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('MXNET_SUBGRAPH_VERBOSE'))")
    assert out.split() == ["None", "None"]


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_import_mxnet_sets_threads_to_the_core_count_and_keeps_a_users_value():
    out = _run("import os\nfrom ssh_toolkit.runners.mxnet_import import import_mxnet\nimport_mxnet()\n"
               "print(os.environ['OMP_NUM_THREADS'], os.environ['MXNET_SUBGRAPH_VERBOSE'])")
    assert out.split() == [str(os.cpu_count()), "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", "import os\nfrom ssh_toolkit.runners.mxnet_import import "
                          "import_mxnet\nimport_mxnet()\nprint(os.environ['OMP_NUM_THREADS'])"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_numpy_alias_is_the_only_patch_and_mxnet_imports():
    import json

    out = json.loads(_run(
        "import json, numpy as np\nbefore = dict(vars(np))\n"
        "from ssh_toolkit.runners.mxnet_import import import_mxnet\nmx = import_mxnet()\n"
        "changed = sorted(k for k, v in vars(np).items() if (k not in before or before[k] is not v)\n"
        "                 and not isinstance(v, type(np)))  # submodules importing mxnet loads are no patch\n"
        "print(json.dumps([np.__version__, 'bool' in before, changed, vars(np).get('bool') is bool,\n"
        "                  mx.__version__, (mx.nd.array([0, 2]) > 1).asnumpy().tolist()]))"))
    numpy_version, had_bool, changed, is_builtin, mx_version, result = out
    assert mx_version == "1.9.1" and result == [0.0, 1.0]
    if numpy_version == "1.26.4":  # the pinned numpy: the alias was missing, it is the one name added
        assert (had_bool, changed, is_builtin) == (False, ["bool"], True)
    else:  # a numpy that has np.bool (< 1.24, or 2.x): nothing touched
        assert changed == []


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_mxnet_does_not_import_on_this_numpy_without_the_alias():
    """The alias is needed (if this starts passing, drop it from mxnet_import.py)."""
    proc = subprocess.run([sys.executable, "-c", "import mxnet"], capture_output=True, text=True)
    assert proc.returncode != 0 and "has no attribute 'bool'" in proc.stderr
