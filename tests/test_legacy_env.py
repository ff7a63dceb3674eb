"""The managed Model Optimizer environment: lock, completion marker, rebuilds, refusals, no package index.

Installing openvino-dev takes a minute, so most tests replace the three slow steps (``python -m venv``, ``pip
install`` and the probe run by the environment's Python) with fakes that write and read a ``fake.json``; the
lock, the temporary folder, the marker, the rename and the decisions are the real code. The real environment
(created on first use by the session fixture ``mo_env``) is checked for real, and the unreachable-index test
runs the real venv + pip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssh_toolkit import legacy_env as le
from ssh_toolkit.cli import app
from ssh_toolkit.errors import EnvironmentProblem, UsageError

GOOD = {"openvino-dev": "2023.3.0", "openvino": "2023.3.0", "numpy": "1.23.5", "mxnet": "1.9.1"}

FAKES = '''
import json, os, sys, time
from pathlib import Path
from ssh_toolkit import legacy_env as le

def fake_step(cmd, what, tmp, say):
    (tmp / "bin").mkdir(parents=True, exist_ok=True)
    os.symlink(sys.executable, tmp / "bin" / "python")

def fake_pip(tmp, say):
    time.sleep(float(os.environ.get("FAKE_PIP_SECONDS", "0")))
    if os.environ.get("FAKE_PIP_FAIL"):
        raise le.EnvironmentProblem("cannot install Model Optimizer: fake pip failed")
    pkgs = json.loads(os.environ.get("FAKE_PACKAGES", json.dumps(%r)))
    (tmp / "fake.json").write_text(json.dumps(pkgs))

def fake_probe(path, timeout=300):
    if not path.is_dir():
        raise le.EnvCheckFailed("missing", f"{path}: no such folder")
    if not le.env_python(path).exists():
        raise le.EnvCheckFailed("half-installed", f"{le.env_python(path)}: missing")
    f = path / "fake.json"
    pkgs = json.loads(f.read_text()) if f.is_file() else {k: None for k in ("openvino-dev", "openvino", "numpy", "mxnet")}
    mo = "2023.3.0-13775-fake" if (pkgs.get("openvino-dev") or "").startswith("2023.3") else None
    return {"python": "3.11.7", "packages": pkgs, "problems": [], "mo": mo}

le._run_step, le._pip_install, le.probe = fake_step, fake_pip, fake_probe
''' % (GOOD,)


@pytest.fixture
def fakes(monkeypatch):
    ns: dict = {}
    for name in ("_run_step", "_pip_install", "probe"):  # restored after the test
        monkeypatch.setattr(le, name, getattr(le, name))
    exec(FAKES, ns)  # the same fakes the subprocess tests use, applied to this process
    monkeypatch.setattr(le, "_CHECKED", {})
    return ns


def say_into(lines):
    return lines.append


def test_home_defaults_to_the_user_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SSH_TOOLKIT_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert le.managed_path() == tmp_path / "xdg" / "ssh-toolkit" / "envs" / "mo-2023.3.0"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert le.managed_path() == tmp_path / "h" / ".cache" / "ssh-toolkit" / "envs" / "mo-2023.3.0"
    monkeypatch.setenv("SSH_TOOLKIT_HOME", str(tmp_path / "th"))
    assert le.managed_path() == tmp_path / "th" / "envs" / "mo-2023.3.0"


def test_created_once_with_marker_written_last_then_reused(fakes, tmp_path):
    lines = []
    env = le.ensure_mo_env(home=tmp_path, say=say_into(lines))
    path = tmp_path / "envs" / "mo-2023.3.0"
    assert env.path == path and env.managed and env.mo_version.startswith("2023.3")
    marker = json.loads((path / le.MARKER).read_text())
    assert marker["requirements"] == list(le.REQUIREMENTS) and marker["packages"] == GOOD
    assert "installing openvino-dev[mxnet]==2023.3.0 mxnet==1.9.1 numpy==1.23.5" in lines[0]
    assert "cannot share an environment with the OpenVINO 2026 runtime" in lines[0]
    assert [p.name for p in (tmp_path / "envs").iterdir() if p.name.endswith(".tmp")] == []
    le._CHECKED.clear()
    lines.clear()
    again = le.ensure_mo_env(home=tmp_path, say=say_into(lines))
    assert again.path == path and lines == []  # reused, nothing installed
    assert le.inspect(home=tmp_path).state == "ready"


def _run_fake(home: Path, code: str, **env) -> subprocess.Popen:
    script = FAKES + code
    return subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "SSH_TOOLKIT_HOME": str(home),
                                                                 **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


ENSURE = "\nenv = le.ensure_mo_env()\nprint('ENV', env.path)\n"


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_two_processes_at_once_one_builds_the_other_waits_and_reuses(tmp_path):
    a = _run_fake(tmp_path, ENSURE, FAKE_PIP_SECONDS="3")
    import time

    time.sleep(1.0)
    b = _run_fake(tmp_path, ENSURE, FAKE_PIP_SECONDS="3")
    (out_a, err_a), (out_b, err_b) = a.communicate(timeout=60), b.communicate(timeout=60)
    assert a.returncode == 0 and b.returncode == 0, err_a + err_b
    path = tmp_path / "envs" / "mo-2023.3.0"
    assert out_a.strip() == out_b.strip() == f"ENV {path}"
    assert "installing" in err_a and "waiting for another ssh-toolkit process" in err_b
    assert "installing" not in err_b  # reused what the first one built


def test_killed_mid_install_leaves_no_env_and_the_next_run_rebuilds(fakes, tmp_path):
    p = _run_fake(tmp_path, ENSURE, FAKE_PIP_SECONDS="30")
    envs = tmp_path / "envs"
    import time

    for _ in range(100):  # until the build is under way
        if any(envs.glob(".mo-2023.3.0.*.tmp")):
            break
        time.sleep(0.1)
    p.kill()
    p.communicate()
    assert not (envs / "mo-2023.3.0").exists()  # the half environment never sits at the final path
    stale = list(envs.glob(".mo-2023.3.0.*.tmp"))
    assert stale
    assert le.inspect(home=tmp_path).state == "missing"
    env = le.ensure_mo_env(home=tmp_path, say=lambda m: None)
    assert (env.path / le.MARKER).is_file() and not any(s.exists() for s in stale)


def test_a_folder_without_marker_is_half_installed_and_rebuilt(fakes, tmp_path):
    path = tmp_path / "envs" / "mo-2023.3.0"
    (path / "bin").mkdir(parents=True)
    (path / "lib-half-written").write_text("x")
    assert le.inspect(home=tmp_path).state == "half-installed"
    lines = []
    le.ensure_mo_env(home=tmp_path, say=say_into(lines))
    assert "half-installed (no completion marker): rebuilding it" in lines[0]
    assert not (path / "lib-half-written").exists() and (path / le.MARKER).is_file()


@pytest.mark.parametrize("damage,state", [
    (lambda p: (p / "fake.json").write_text(json.dumps({**GOOD, "numpy": "1.26.4"})), "wrong version"),
    (lambda p: (p / "bin" / "python").unlink(), "half-installed"),  # its Python deleted
])
def test_wrong_version_or_deleted_python_is_detected_and_rebuilt(fakes, tmp_path, damage, state):
    env = le.ensure_mo_env(home=tmp_path, say=lambda m: None)
    damage(env.path)
    le._CHECKED.clear()
    st = le.inspect(home=tmp_path)
    assert st.state == state, st
    lines = []
    again = le.ensure_mo_env(home=tmp_path, say=say_into(lines))
    assert f"is {state}" in lines[0] and "rebuilding it" in lines[0]
    assert json.loads((again.path / "fake.json").read_text()) == GOOD


def test_install_failure_leaves_nothing_behind(fakes, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_PIP_FAIL", "1")
    with pytest.raises(EnvironmentProblem, match="fake pip failed"):
        le.ensure_mo_env(home=tmp_path, say=lambda m: None)
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == ["mo-2023.3.0.lock"]


def test_users_env_of_the_wrong_version_is_refused_and_not_modified(fakes, tmp_path):
    mine = tmp_path / "my-env"
    (mine / "bin").mkdir(parents=True)
    os.symlink(sys.executable, mine / "bin" / "python")
    (mine / "fake.json").write_text(json.dumps({**GOOD, "openvino-dev": "2024.0.0"}))
    before = sorted((p.name, p.stat().st_mtime_ns) for p in mine.rglob("*"))
    with pytest.raises(EnvironmentProblem) as e:
        le.ensure_mo_env(mine)
    msg = str(e.value)
    assert msg.startswith(f"{mine}: holds openvino-dev 2024.0.0, expected 2023.3.x") and "--mo-env" in msg
    assert "not used nor modified" in msg
    assert sorted((p.name, p.stat().st_mtime_ns) for p in mine.rglob("*")) == before
    with pytest.raises(UsageError, match="no such folder"):
        le.ensure_mo_env(tmp_path / "nowhere")


def test_env_var_names_the_users_env(fakes, tmp_path, monkeypatch):
    mine = tmp_path / "e"
    (mine / "bin").mkdir(parents=True)
    os.symlink(sys.executable, mine / "bin" / "python")
    (mine / "fake.json").write_text(json.dumps(GOOD))
    monkeypatch.setenv("SSH_TOOLKIT_MO_ENV", str(mine))
    env = le.ensure_mo_env(home=tmp_path)
    assert env.path == mine and not env.managed
    assert not (tmp_path / "envs").exists()  # the managed one is not created


# ---- real environments -------------------------------------------------------------------------------------

@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_the_real_env_holds_mo_2023_3_with_the_mxnet_frontend(mo_env):
    assert mo_env.packages["openvino-dev"] == "2023.3.0" and mo_env.packages["numpy"] == "1.23.5"
    assert mo_env.packages["mxnet"] == "1.9.1" and mo_env.mo_version.startswith("2023.3.0")
    st = le.inspect(mo_env.path) if not mo_env.managed else le.inspect()
    assert st.state == "ready", st


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_this_projects_own_environment_is_refused_as_mo_env(monkeypatch):
    """A real probe of a real environment without openvino-dev (the toolkit's own, on OpenVINO 2026)."""
    monkeypatch.setattr(le, "_CHECKED", {})
    own = Path(sys.prefix)
    with pytest.raises(EnvironmentProblem, match=r"holds openvino-dev None, expected 2023\.3\.x"):
        le.ensure_mo_env(own)


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_unreachable_package_index_is_one_line_exit_3_and_no_partial_env(tmp_path, card, monkeypatch):
    from ssh_toolkit.standins.toy import synthesize_toy
    from ssh_toolkit.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    synthesize_toy(card, ws.checkpoint_dir("toy"), seed=0)
    home = tmp_path / "home"
    for k, v in {"SSH_TOOLKIT_HOME": str(home), "PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1",
                 "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "5",
                 "PIP_FIND_LINKS": "", "SSH_TOOLKIT_MO_ENV": ""}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(le, "_CHECKED", {})
    r = CliRunner().invoke(app, ["convert", "-w", str(ws.root), "--weights", "toy", "--precision", "FP32"])
    assert r.exit_code == 3, r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("ssh-toolkit: error:")]
    assert len(errors) == 1 and "Traceback" not in r.output
    assert "the package index is unreachable" in errors[0] and "--mo-env" in errors[0], errors[0]
    assert sorted(p.name for p in (home / "envs").iterdir()) == ["mo-2023.3.0.lock"]
    assert not ws.ir_dir("toy", 640, "FP32").exists()


@pytest.mark.slow
def test_real_creation_from_the_package_index(tmp_path, monkeypatch):
    """One real creation (about 30-40 s here): venv + pip install + check, marker, rename, then reuse."""
    monkeypatch.setattr(le, "_CHECKED", {})
    lines = []
    env = le.ensure_mo_env(home=tmp_path, say=say_into(lines))
    path = tmp_path / "envs" / "mo-2023.3.0"
    assert env.path == path and env.managed
    assert (env.packages["openvino-dev"], env.packages["numpy"], env.packages["mxnet"]) == ("2023.3.0", "1.23.5",
                                                                                            "1.9.1")
    assert env.mo_version.startswith("2023.3.0")
    marker = json.loads((path / le.MARKER).read_text())
    assert marker["mo"] == env.mo_version and marker["packages"] == env.packages
    assert lines[0].startswith("Model Optimizer environment: installing openvino-dev[mxnet]==2023.3.0")
    assert any(ln.startswith("  pip: Successfully installed") for ln in lines)
    assert lines[-1].startswith(f"Model Optimizer environment ready: {path}")
    assert sorted(p.name for p in (tmp_path / "envs").iterdir()) == ["mo-2023.3.0", "mo-2023.3.0.lock"]
    # the scripts name the final folder, not the temporary one it was built in
    assert (path / "bin" / "pip").read_text().splitlines()[0].startswith(f"#!{path}/bin/python")
    help_text = subprocess.run(env.mo_command(["--help"]), capture_output=True, text=True, env=env.subprocess_env())
    assert help_text.returncode == 0 and "--input_model" in help_text.stdout
    le._CHECKED.clear()
    lines.clear()
    assert le.ensure_mo_env(home=tmp_path, say=say_into(lines)).path == path and lines == []


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_convert_with_mo_env(standin_ws, mo_env, monkeypatch):
    ws, _, _ = standin_ws
    monkeypatch.setattr(le, "_CHECKED", {})
    r = CliRunner().invoke(app, ["convert", "-w", str(ws.root), "--weights", "standin", "--input-size", "128",
                                 "--mo-env", str(mo_env.path)])
    assert r.exit_code == 0, r.output
    assert r.output.count("up to date, not converted again") == 2  # same Model Optimizer: same fingerprint
    own = Path(sys.prefix)  # the toolkit's own environment: OpenVINO 2026, no Model Optimizer
    r = CliRunner().invoke(app, ["convert", "-w", str(ws.root), "--weights", "standin", "--input-size", "128",
                                 "--mo-env", str(own)])
    assert r.exit_code == 3 and "Traceback" not in r.output
    errors = [ln for ln in r.output.splitlines() if ln.startswith("ssh-toolkit: error:")]
    assert errors == [f"ssh-toolkit: error: {own}: holds openvino-dev None, expected 2023.3.x (the last Model "
                      f"Optimizer that reads MXNet); the environment given with --mo-env is not used nor "
                      f"modified: it needs {' '.join(le.REQUIREMENTS)}"]
