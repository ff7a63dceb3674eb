"""Default run folders: unique across processes, and never left behind empty."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

from ssh_toolkit import run_record
from ssh_toolkit.run_record import default_run_dir, release_unused_run_dirs


class _FrozenClock(datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime(2026, 12, 2, 11, 33, 7)


def test_runs_started_in_the_same_second_get_distinct_reserved_folders(tmp_path, monkeypatch):
    """Defect 2: two runs started in the same second shared one default run folder; one result was lost."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("datetime.datetime", _FrozenClock)
    first, second, third = default_run_dir("toy-640"), default_run_dir("toy-640"), default_run_dir("toy-640")
    assert [str(p) for p in (first, second, third)] == [
        "reports/runs/20261202-113307-toy-640", "reports/runs/20261202-113307-toy-640-2",
        "reports/runs/20261202-113307-toy-640-3"]
    assert all((tmp_path / p).is_dir() for p in (first, second, third))  # reserved on disk, not only named
    (tmp_path / second / "summary.json").write_text("{}")  # this run was written
    assert sorted(release_unused_run_dirs()) == [tmp_path / first, tmp_path / third]
    assert [p.name for p in (tmp_path / "reports" / "runs").iterdir()] == ["20261202-113307-toy-640-2"]
    assert run_record._reserved == []


def test_processes_reserving_at_once_never_share_a_folder(tmp_path):
    code = ("import sys\nfrom ssh_toolkit.run_record import default_run_dir\n"
            "print('\\n'.join(str(default_run_dir('toy-640')) for _ in range(20)))\n"
            "sys.stdout.flush()\nimport os\nos._exit(0)\n")  # keep the folders: skip the exit-time release
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    names = [line for p in procs for line in p.communicate()[0].split()]
    assert all(p.returncode == 0 for p in procs)
    assert len(names) == 80 and len(set(names)) == 80
    assert len(list((tmp_path / "reports" / "runs").iterdir())) == 80


def test_a_process_that_fails_leaves_no_empty_reserved_folder(tmp_path):
    code = "from ssh_toolkit.run_record import default_run_dir\ndefault_run_dir('toy-640')\nraise SystemExit(2)\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path)
    assert r.returncode == 2
    assert (tmp_path / "reports" / "runs").is_dir() and list((tmp_path / "reports" / "runs").iterdir()) == []
