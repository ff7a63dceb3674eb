"""fileio: folders replaced only when the toolkit wrote them, stale temporaries, and OSErrors that name the path."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from ssh_toolkit import fileio
from ssh_toolkit.errors import UsageError
from ssh_toolkit.fileio import MARKER, atomic_dir, atomic_path, check_replaceable, write_text


def _write_folder(path, files, kind="run"):
    with atomic_dir(path, kind=kind) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # exited and reaped: that pid belongs to no process now
    return proc.pid


def test_a_folder_carries_the_marker_listing_its_files_with_sizes(tmp_path):
    out = _write_folder(tmp_path / "out", {"a.txt": "abc", "sub/b.txt": "hello"})
    marker = json.loads((out / MARKER).read_text())
    assert marker["written_by"] == "ssh-toolkit" and marker["state"] == "complete"
    assert marker["files"] == {"a.txt": 3, "sub/b.txt": 5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left beside it


def test_a_summary_json_does_not_make_a_folder_the_toolkits(tmp_path):
    """Defect 1: any folder holding a summary.json was wiped, user files included."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("x\n")
    (d / "summary.json").write_text("{}\n")
    with pytest.raises(UsageError, match=r"d: exists and was not written by ssh-toolkit \(no \.ssh-toolkit\.json\); "
                                         r"it holds notes.txt, summary.json; choose another folder or remove it"):
        with atomic_dir(d, kind="run") as tmp:
            (tmp / "summary.json").write_text("new")
    assert (d / "notes.txt").read_text() == "x\n" and (d / "summary.json").read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_a_toolkit_folder_with_a_users_file_is_refused_naming_it(tmp_path):
    out = _write_folder(tmp_path / "out", {"report.md": "v1", "sub/t.csv": "1"})
    (out / "notes.txt").write_text("mine")
    (out / "sub" / "more.txt").write_text("mine too")
    with pytest.raises(UsageError, match=r"out: holds files ssh-toolkit did not write: notes.txt, sub/more.txt; "
                                         r"move them away or choose another folder \(nothing was deleted\)"):
        _write_folder(out, {"report.md": "v2"})
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "more.txt").read_text() == "mine too"
    assert (out / "report.md").read_text() == "v1"


def test_a_damaged_file_the_toolkit_wrote_is_still_its_own(tmp_path):
    out = _write_folder(tmp_path / "out", {"sshb.bin": "weights"})
    (out / "sshb.bin").write_text("trunc")  # e.g. damaged: converting again must replace it
    _write_folder(out, {"sshb.bin": "weights"})
    assert (out / "sshb.bin").read_text() == "weights"


def test_a_toolkit_folder_is_replaced_as_a_whole_and_later_toolkit_files_count_as_its_own(tmp_path):
    out = _write_folder(tmp_path / "out", {"a.txt": "1", "old.txt": "2"})
    write_text(out / "report.html", "<html>")  # written later into the finished folder (ssh-toolkit report)
    assert json.loads((out / MARKER).read_text())["files"]["report.html"] == 6
    _write_folder(out, {"a.txt": "new"})
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]
    assert (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_absent_or_empty_folders_are_replaceable_a_file_is_not(tmp_path):
    check_replaceable(tmp_path / "absent", "run")
    (tmp_path / "empty").mkdir()
    _write_folder(tmp_path / "empty", {"a.txt": "1"})
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="file: exists and is not a folder"):
        _write_folder(tmp_path / "file", {"a.txt": "1"})
    assert (tmp_path / "file").read_text() == "x"


def test_a_failed_block_leaves_the_old_folder_and_no_temporary(tmp_path):
    out = _write_folder(tmp_path / "out", {"a.txt": "1"})
    with pytest.raises(RuntimeError):
        with atomic_dir(out, kind="run") as tmp:
            (tmp / "a.txt").write_text("half")
            raise RuntimeError("boom")
    assert (out / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_files_added_while_the_toolkit_worked_are_kept(tmp_path):
    out = _write_folder(tmp_path / "out", {"a.txt": "1"})
    with pytest.raises(UsageError, match="did not write: late.txt"):
        with atomic_dir(out, kind="run") as tmp:
            (out / "late.txt").write_text("added during a long run")
            (tmp / "a.txt").write_text("2")
    assert (out / "late.txt").exists() and (out / "a.txt").read_text() == "1"


# --------------------------------------------------------------------------- defect 9: stale temporary folders


def test_a_stale_temporary_folder_of_a_dead_process_is_removed_a_live_ones_is_kept(tmp_path):
    """Defect 9: an interrupted convert left its .tmp folder beside the IR folder forever."""
    dead, live = _dead_pid(), os.getppid()  # the parent (pytest's launcher) is running
    host = socket.gethostname()

    def tmp_dir(name, pid, marker=True):
        d = tmp_path / f".{name}.{pid}-abcd1234.tmp"
        d.mkdir()
        (d / "sshb.bin").write_text("partial")
        if marker:
            (d / MARKER).write_text(json.dumps({"written_by": "ssh-toolkit", "state": "writing", "pid": pid,
                                                "host": host, "files": {}}))
        return d

    stale, running = tmp_dir("FP32", dead), tmp_dir("FP16", live)
    empty_stale = tmp_path / f".FP16.{dead}-zzzz0000.tmp"
    empty_stale.mkdir()
    empty_recent = tmp_path / f".FP16.{dead}-zzzz1111.tmp"  # maybe another machine's, just created: kept
    empty_recent.mkdir()
    unmarked = tmp_dir("other", dead, marker=False)  # matches the name pattern but was not written by us
    users = tmp_path / ".cache.tmp"
    users.mkdir()
    stale_file = tmp_path / f".summary.json.{dead}-0a1b2c3d.tmp"
    stale_file.write_text("half a file")
    recent_file = tmp_path / f".summary.json.{dead}-0a1b2c3e.tmp"
    recent_file.write_text("being written")
    hour_ago = time.time() - 3600
    for p in (empty_stale, stale_file):
        os.utime(p, (hour_ago, hour_ago))

    _write_folder(tmp_path / "FP32", {"sshb.xml": "<net/>"})  # the next run
    assert not stale.exists() and not empty_stale.exists() and not stale_file.exists()
    assert running.is_dir() and (running / "sshb.bin").is_file()
    assert unmarked.is_dir() and users.is_dir() and empty_recent.is_dir() and recent_file.is_file()


def test_a_temporary_folder_from_another_host_is_kept(tmp_path):
    d = tmp_path / f".FP32.{_dead_pid()}-abcd1234.tmp"
    d.mkdir()
    (d / MARKER).write_text(json.dumps({"written_by": "ssh-toolkit", "state": "writing", "host": "elsewhere",
                                        "files": {}}))
    assert fileio.remove_stale_temporaries(tmp_path) == []
    assert d.is_dir()


def test_interrupted_convert_subprocess_leaves_a_folder_that_the_next_run_removes(tmp_path):
    code = ("import os, sys\nfrom ssh_toolkit.fileio import atomic_dir\n"
            f"with atomic_dir({str(tmp_path / 'FP32')!r}, kind='ir') as tmp:\n"
            "    (tmp / 'sshb.bin').write_text('partial')\n    os._exit(9)\n")  # killed: no cleanup runs
    subprocess.run([sys.executable, "-c", code], check=False)
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".FP32.") and left[0].endswith(".tmp")
    _write_folder(tmp_path / "FP32", {"sshb.xml": "<net/>"})
    assert [p.name for p in tmp_path.iterdir()] == ["FP32"]


# --------------------------------------------------------------------------- defect 3: OSErrors name the path


def test_disk_full_while_writing_a_file_names_the_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() on a full disk does
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert list((tmp_path / "sub").iterdir()) == []


def test_disk_full_while_replacing_a_folder_names_the_folder(tmp_path, monkeypatch):
    out = _write_folder(tmp_path / "out", {"a.txt": "1"})
    real_replace = os.replace

    def full(src, dst):
        if str(src).endswith(".tmp") and os.path.isdir(src):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError) as info:
        _write_folder(out, {"a.txt": "2"})
    assert info.value.filename == str(out)
    assert (out / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_under_a_file_is_an_oserror_naming_it(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OSError) as info:
        _write_folder(tmp_path / "f" / "run", {"a.txt": "1"})
    assert str(tmp_path / "f") in str(info.value.filename)


def test_an_unwritable_or_read_only_destination_is_found_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        check_replaceable(tmp_path / "f" / "deep" / "run", "run")
    assert info.value.filename == str(tmp_path / "f")

    monkeypatch.setattr(os, "access", lambda *a, **k: False)  # root ignores permission bits: pretend
    with pytest.raises(PermissionError) as info:
        check_replaceable(tmp_path / "new" / "run", "run")
    assert info.value.filename == str(tmp_path)

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(os, "statvfs", lambda p: ReadOnly())
    with pytest.raises(OSError) as info:
        check_replaceable(tmp_path / "run", "run")
    assert info.value.errno == errno.EROFS and info.value.filename == str(tmp_path)


# --------------------------------------------------------------------------- review finding 1: folder kinds


def test_a_toolkit_folder_of_another_kind_is_refused_naming_both_kinds(tmp_path):
    """Finding 1: --report-dir workspace/checkpoints/toy deleted the checkpoint: any marked folder was replaced."""
    ck = _write_folder(tmp_path / "toy", {"sshb-symbol.json": "{}", "checkpoint.json": "{}"}, kind="checkpoint")
    assert json.loads((ck / MARKER).read_text())["kind"] == "checkpoint"
    with pytest.raises(UsageError) as info:
        _write_folder(ck, {"summary.json": "{}"}, kind="run")
    assert str(info.value) == (f"{ck}: is a checkpoint folder written by ssh-toolkit, not a run folder (evaluate); "
                               f"not replaced: choose another folder")
    assert sorted(p.name for p in ck.iterdir()) == [MARKER, "checkpoint.json", "sshb-symbol.json"]
    with pytest.raises(UsageError, match=r"is a run folder \(evaluate\) written by ssh-toolkit, not a dataset "):
        _write_folder(_write_folder(tmp_path / "run", {"summary.json": "{}"}), {"a.jpg": "x"}, kind="dataset")
    assert (tmp_path / "run" / "summary.json").read_text() == "{}"
    _write_folder(ck, {"checkpoint.json": "[]"}, kind="checkpoint")  # the same kind is replaced
    assert sorted(p.name for p in ck.iterdir()) == [MARKER, "checkpoint.json"]


def _as_format_1(folder):
    marker = json.loads((folder / MARKER).read_text())
    del marker["kind"]
    marker["format"] = 1
    (folder / MARKER).write_text(json.dumps(marker))


def test_a_folder_marked_without_a_kind_is_known_by_its_files_else_refused(tmp_path):
    run = _write_folder(tmp_path / "run", {"summary.json": "{}", "report.md": "#"})
    _as_format_1(run)
    with pytest.raises(UsageError, match="is a run folder .evaluate. written by ssh-toolkit, not a dataset folder"):
        _write_folder(run, {"a.jpg": "x"}, kind="dataset")
    _write_folder(run, {"summary.json": "[]"})  # recognised as a run folder by its summary.json
    assert (run / "summary.json").read_text() == "[]"
    data = _write_folder(tmp_path / "data", {"wider_face_split/gt.txt": "1", "WIDER_val/images/a.jpg": "x"},
                         kind="dataset")
    _as_format_1(data)
    with pytest.raises(UsageError, match="is a dataset folder written by ssh-toolkit, not a run folder"):
        _write_folder(data, {"summary.json": "{}"})
    odd = _write_folder(tmp_path / "odd", {"a.txt": "1"})
    _as_format_1(odd)
    with pytest.raises(UsageError, match=r"odd: written by an older ssh-toolkit that did not record what kind of "
                                         r"folder it is, and its files do not say; not replaced by a run folder"):
        _write_folder(odd, {"a.txt": "2"})
    assert (odd / "a.txt").read_text() == "1"


# --------------------------------------------------------------------------- review finding 5: concurrent writers


def test_a_folder_written_by_another_command_meanwhile_is_not_replaced(tmp_path):
    """Finding 5: two commands writing the same --report-dir both exited 0 and one result was silently lost."""
    out = tmp_path / "run"
    with pytest.raises(UsageError) as info:
        with atomic_dir(out, kind="run") as tmp:
            (tmp / "summary.json").write_text("mine")
            _write_folder(out, {"summary.json": "theirs"})  # another command finished first
    assert str(info.value) == (f"{out}: was written by another command while this one worked (it changed since "
                               f"it was checked); this result was not written, the other one is kept: choose "
                               f"another folder or run again")
    assert (out / "summary.json").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing half written beside it

    checked = check_replaceable(out, "run")  # a caller checks before hours of work...
    _write_folder(out, {"summary.json": "third"})  # ...meanwhile another command replaces the folder
    with pytest.raises(UsageError, match="was written by another command while this one worked"):
        with atomic_dir(out, kind="run", checked=checked) as tmp:
            (tmp / "summary.json").write_text("mine")
    assert (out / "summary.json").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_processes_finishing_together_keep_exactly_one_result(tmp_path):
    """Finding 5, with real processes: all check the destination, then all swap at once; one wins, the others
    exit 2 (UsageError) and leave nothing behind."""
    out, go = tmp_path / "out", tmp_path / "go"
    code = ("import sys, time\nfrom pathlib import Path\nfrom ssh_toolkit.errors import UsageError\n"
            "from ssh_toolkit.fileio import atomic_dir\n"
            f"out, go, me = Path({str(out)!r}), Path({str(go)!r}), sys.argv[1]\n"
            "try:\n"
            "    with atomic_dir(out, kind='run') as tmp:\n"
            "        (tmp / 'who.txt').write_text(me)\n"
            "        print('ready', flush=True)\n"
            "        while not go.exists():\n"
            "            time.sleep(0.01)\n"
            "except UsageError as e:\n"
            "    print(e)\n"
            "    sys.exit(2)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE, text=True)
             for i in range(4)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.write_text("")
    codes = [p.wait(timeout=60) for p in procs]
    assert sorted(codes) == [0, 2, 2, 2], codes
    winner = codes.index(0)
    assert (out / "who.txt").read_text() == str(winner)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "out"]  # no temporary, no lock file left


# --------------------------------------------------------------------------- review finding 19: no long walks


def test_a_foreign_folder_is_refused_at_once_without_walking_it(tmp_path, monkeypatch):
    """Finding 19: --report-dir ~ walked the whole home folder (7 s) before refusing; --report-dir / failed on
    /proc. Only the top level of a folder without the marker is looked at."""
    home = tmp_path / "home"
    (home / "deep" / "deeper").mkdir(parents=True)
    (home / "deep" / "deeper" / "x.txt").write_text("x")
    (home / "notes.txt").write_text("x")
    monkeypatch.setattr(os, "walk", lambda *a, **k: pytest.fail("walked a foreign folder"))
    with pytest.raises(UsageError, match=r"home: exists and was not written by ssh-toolkit \(no \.ssh-toolkit\.json"
                                         r"\); it holds deep/, notes.txt; choose another folder or remove it"):
        check_replaceable(home, "run")
    monkeypatch.undo()
    start = time.perf_counter()
    with pytest.raises(UsageError, match=r"^/: exists and was not written by ssh-toolkit .* it holds .+ and \d+ more"):
        check_replaceable("/", "run")
    assert time.perf_counter() - start < 1


def test_a_users_folder_inside_a_toolkit_folder_is_named_not_walked(tmp_path):
    out = _write_folder(tmp_path / "out", {"a.txt": "1", "sub/t.csv": "1"})
    mine = out / "photos"
    mine.mkdir()
    for i in range(50):
        (mine / f"{i}.jpg").write_text("x")
    (out / "empty").mkdir()  # holds nothing: no loss, not named
    with pytest.raises(UsageError, match=r"out: holds files ssh-toolkit did not write: photos/; move them away"):
        _write_folder(out, {"a.txt": "2"})
    for i in range(7):
        (out / "sub" / f"n{i}.txt").write_text("x")
    with pytest.raises(UsageError, match=r"did not write: photos/, sub/n0.txt, sub/n1.txt, sub/n2.txt, sub/n3.txt "
                                         r"and 2\+ more; move"):
        _write_folder(out, {"a.txt": "2"})
    assert len(list(mine.iterdir())) == 50


def test_write_text_keeps_a_path_that_is_not_utf8_as_an_escape(tmp_path):
    """A report naming a folder whose name is not UTF-8 (a surrogate escape in the str) was a UnicodeEncodeError
    traceback after the whole run; the name is written as a backslash escape and the file stays UTF-8."""
    from ssh_toolkit.fileio import write_text

    out = write_text(tmp_path / "report.md", "IR: /ws \udcff/ir/sshb.xml\n")
    assert out.read_text(encoding="utf-8") == "IR: /ws \\udcff/ir/sshb.xml\n"
