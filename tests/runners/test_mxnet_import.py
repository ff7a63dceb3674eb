"""MXNet's start-up environment is set where MXNet is imported, never by importing the toolkit."""

import os
import subprocess
import sys


def _run(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MXNET_SUBGRAPH_VERBOSE")}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_importing_the_toolkit_changes_no_environment():
    out = _run("import os, ssh_toolkit, ssh_toolkit.cli, ssh_toolkit.evaluation\n"
               "print(os.environ.get('OMP_NUM_THREADS'), os.environ.get('MXNET_SUBGRAPH_VERBOSE'))")
    assert out.split() == ["None", "None"]


def test_import_mxnet_sets_threads_to_the_core_count_and_keeps_a_users_value():
    out = _run("import os\nfrom ssh_toolkit.runners.mxnet_import import import_mxnet\nimport_mxnet()\n"
               "print(os.environ['OMP_NUM_THREADS'], os.environ['MXNET_SUBGRAPH_VERBOSE'])")
    assert out.split() == [str(os.cpu_count()), "0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", "import os\nfrom ssh_toolkit.runners.mxnet_import import "
                          "import_mxnet\nimport_mxnet()\nprint(os.environ['OMP_NUM_THREADS'])"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "1"
