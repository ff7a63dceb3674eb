"""Ctrl-C and SIGTERM at any moment: one line, cleanup, exit 130 (SIGINT) or 143 (SIGTERM)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

LINES = {
    signal.SIGINT: (130, "ssh-toolkit: interrupted; finished work is kept, run the same command again to resume"),
    signal.SIGTERM: (143, "ssh-toolkit: terminated; finished work is kept, run the same command again to resume"),
}


@pytest.fixture(scope="module")
def toy_checkpoint_ws(tmp_path_factory, card):
    from ssh_toolkit.standins.toy import synthesize_toy
    from ssh_toolkit.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("interrupts") / "ws")
    synthesize_toy(card, ws.checkpoint_dir("toy"), seed=0)
    return ws.root


def _console_script() -> list[str]:
    script = shutil.which("ssh-toolkit", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "ssh_toolkit"]


def _catches_sigint(pid: int) -> bool:
    """The interpreter is up: SIGINT is caught (Python's own handler, then the toolkit's)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigCgt:")), 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


@pytest.mark.slow  # subprocess CLI runs
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see when Python is up")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_during_start_up_or_work_is_one_line_and_its_exit_code(toy_checkpoint_ws, sample_root, tmp_path,
                                                                         sig):
    """Finding 13/14: a Ctrl-C 0.2-0.8 s after start (imports) gave a traceback, or exit 130 silently, or was
    swallowed (an ImportError from a C extension's initialisation); SIGTERM ended silently with 143."""
    code, line = LINES[sig]
    cmd = [*_console_script(), "evaluate", "-w", str(toy_checkpoint_ws), "--weights", "toy", "--model", "mxnet",
           "--data-root", str(sample_root), "--input-size", "128"]
    seen = []
    for delay in (0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.8):
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 10
        while not _catches_sigint(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == code, f"{delay} s: exit {proc.returncode}\n{err}"
        assert "Traceback" not in err and "Exception ignored" not in err, f"{delay} s:\n{err}"
        assert [ln[ln.index("ssh-toolkit:"):] for ln in err.splitlines() if "ssh-toolkit:" in ln] == [line], err
        assert err.rstrip().endswith(line)
        seen.append(delay)
        runs = tmp_path / "reports" / "runs"
        assert (list(runs.iterdir()) if runs.exists() else []) == [], (delay, err)  # the reserved folder was released
    assert len(seen) == 9
