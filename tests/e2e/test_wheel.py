"""Packaging: a wheel built from the repository carries the card and the baselines, and an installed copy works
from a folder outside the clone (no file of the repository is read)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds a wheel (pip fetches setuptools into an isolated build environment)

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DATA = ("ssh_toolkit/pipelines/ssh-mxnet.yaml", "ssh_toolkit/baselines/ssh-mxnet-toy-640.json")


def _run(*cmd, cwd: Path, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=900, **kw)
    assert r.returncode == 0, f"{cmd}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel --no-deps . -w dist`` on a copy of the sources (so the clone gets no build/ or egg-info)."""
    src = tmp_path_factory.mktemp("src") / "ssh-toolkit"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", ".tox", "build", "dist", "*.egg-info",
                                                              "__pycache__", "workspace", "runs"))
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", ".", "-w", dist, cwd=src)
    (whl,) = dist.glob("ssh_toolkit-*.whl")
    return whl


def test_wheel_holds_the_card_and_the_baselines_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for data in PACKAGE_DATA:
        assert data in names, data
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "reports/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    # The console script enters through a module that installs the signal handling before any heavy import.
    assert "ssh-toolkit = ssh_toolkit.__main__:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_installed_wheel_runs_from_outside_the_clone(wheel, tmp_path):
    """The wheel installed (--no-deps) into a new virtual environment that borrows this environment's
    dependencies (a .pth line after its own site-packages), run from a folder that is not the clone."""
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    py = venv / "bin" / "python"
    _run(py, "-m", "pip", "install", "-q", "--no-deps", wheel, cwd=tmp_path)
    site = Path(_run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp_path)
                .stdout.strip())
    # Dependencies from the test environment; ssh_toolkit itself comes from the wheel (first on sys.path).
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    r = _run(venv / "bin" / "ssh-toolkit", "--help", cwd=elsewhere)
    assert "Exit codes: 0 success" in r.stdout
    r = _run(py, "-c", "import ssh_toolkit.card as c, ssh_toolkit.pipeline as p\n"
                       "card = c.load_card()\n"
                       "print(c.__file__); print(card.path); print(p.default_baseline(card, 'toy', 640))",
             cwd=elsewhere)
    module, card_path, baseline = (Path(x) for x in r.stdout.split())
    for path in (module, card_path, baseline):
        assert path.is_relative_to(site) and not path.is_relative_to(REPO), path
    assert card_path.is_file() and baseline.is_file()

    # A command that starts MXNet and writes into the workspace, from the installed copy.
    r = _run(venv / "bin" / "ssh-toolkit", "synthesize", "--kind", "toy", "-w", "ws", cwd=elsewhere)
    assert f"{elsewhere / 'ws' / 'checkpoints' / 'toy'}" in r.stdout
    assert not (REPO / "ws").exists()
