"""Atomic file writes and hashing: output either appears whole or not at all."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

MARKER = ".ssh-toolkit.json"  # written last into every folder made by atomic_dir: its kind, the files it wrote
_MARKER_FORMAT = 2  # 2: records the folder's ``kind``; format 1 did not
# What a folder the toolkit writes is for; a folder is only ever replaced by one of the same kind.
FOLDER_KINDS = {"run": "run folder (evaluate)", "compare": "parity report folder (compare)", "ir": "IR folder",
                "checkpoint": "checkpoint folder", "dataset": "dataset folder",
                "localize": "localize report folder (localize)", "benchmark": "benchmark folder (benchmark)"}
# Format-1 markers named no kind: the files they list say it (the first match wins); anything else is refused.
_LEGACY_KIND_BY_FILE = (("checkpoint", "checkpoint.json"), ("ir", "conversion.json"), ("run", "summary.json"),
                        ("compare", "parity.csv"), ("dataset", "wider_face_split/"))
# Temporary siblings: .<name>.<pid>-<8 random chars>.tmp (being written) and .old (being replaced).
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)-[a-z0-9_]{8}\.(?P<kind>tmp|old)$")
_MAX_NAMED = 5  # files named in a refusal, then "and N more"
# A temporary file or empty folder carries no host: another machine's (or container's) process with the same pid
# number could be writing it. Only ones untouched for this long are stale.
_STALE_AGE_S = 600


def _name_error(e: OSError, path: Path, tmp: Path | None = None) -> None:
    """Make an OSError name the path the user knows: ``path`` (or the file inside it) instead of nothing or
    our temporary name."""
    if e.filename is None:
        e.filename, e.filename2 = str(path), None
    elif tmp is not None and str(e.filename).startswith(str(tmp)):
        e.filename, e.filename2 = str(path) + str(e.filename)[len(str(tmp)):], None


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` (or itself) when it is not a folder: nothing can be made there."""
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


def _check_writable(folder: Path) -> None:
    """OSError naming the nearest existing ancestor of ``folder`` when ``folder`` cannot be made or written."""
    blocker = _blocking_file(folder)
    if blocker is not None:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocker))
    existing = next((p for p in (folder, *folder.parents) if p.is_dir()), None)
    if existing is None:
        return
    if hasattr(os, "statvfs") and os.statvfs(existing).f_flag & os.ST_RDONLY:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))


def make_dirs(folder: Path) -> None:
    """``mkdir -p``; a file in the way is reported as itself (not as the folder we wanted, nor 'File exists')."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = _blocking_file(folder)
        if blocker is None:
            raise
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocker)) from None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no cheap liveness check: never remove another process's folder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists, owned by someone else
        return True
    return True


def _temp_name(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def _entries(directory: str | Path) -> list[os.DirEntry]:
    """The entries of ``directory``; none when it cannot be listed (absent, not a folder, unreadable)."""
    try:
        return list(os.scandir(directory))
    except OSError:
        return []


def remove_stale_temporaries(directory: Path, name: str | None = None) -> list[Path]:
    """Remove temporary files and folders that a killed ssh-toolkit process left in ``directory``.

    Only names of the toolkit's own pattern (``.<name>.<pid>-<random>.tmp|.old``, for ``name`` if given) whose
    process is gone are touched; a folder also has to carry the toolkit's marker written on this host, a file or
    an empty folder must be untouched for ten minutes. Anything else, and anything of a process still running,
    is left alone. Returns what was removed.
    """
    removed = []
    for entry in _entries(directory):
        m = _TEMP_RE.match(entry.name)
        if not m or (name is not None and m["name"] != name) or _pid_alive(int(m["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_symlink():
                continue
            old_enough = time.time() - entry.stat().st_mtime > _STALE_AGE_S
            if entry.is_file():
                if m["kind"] == "tmp" and old_enough:
                    path.unlink()
                    removed.append(path)
            elif entry.is_dir():
                if not any(path.iterdir()):
                    if old_enough:
                        path.rmdir()
                        removed.append(path)
                    continue
                marker = _read_marker(path)
                if marker is None or marker.get("host", socket.gethostname()) != socket.gethostname():
                    continue
                if m["kind"] == "tmp":
                    shutil.rmtree(path)
                else:  # an old version being replaced: delete only what the toolkit wrote into it
                    _remove_owned(path)
                removed.append(path)
        except OSError:
            continue  # someone else's cleanup won the race, or not ours to remove
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    An OSError names ``path``; a file written into a folder carrying the toolkit's marker is added to it.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        make_dirs(path.parent)
        remove_stale_temporaries(path.parent, path.name)
        tmp_path = _temp_name(path, "tmp")
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        yield tmp_path
        os.replace(tmp_path, path)
        _add_to_marker(path)
    except OSError as e:
        _name_error(e, path, tmp_path)
        raise
    finally:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)


def _files_under(folder: Path) -> dict[str, int]:
    """Relative POSIX path -> size of every file (and symlink) under ``folder``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            full = os.path.join(dirpath, n)
            out[Path(os.path.relpath(full, folder)).as_posix()] = os.lstat(full).st_size
    return out


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("written_by") != "ssh-toolkit" or not isinstance(data.get("files"), dict):
        return None
    return data


def _write_marker(folder: Path, state: str, kind: str) -> None:
    files = dict(sorted((k, v) for k, v in _files_under(folder).items() if k != MARKER)) if state == "complete" else {}
    data = {"written_by": "ssh-toolkit", "format": _MARKER_FORMAT, "kind": kind, "state": state, "pid": os.getpid(),
            "host": socket.gethostname(), "files": files}
    (folder / MARKER).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _add_to_marker(path: Path) -> None:
    """List ``path`` in its folder's marker when that folder is a finished toolkit folder (report.html later)."""
    folder = path.parent
    if path.name == MARKER or not (folder / MARKER).is_file():
        return
    marker = _read_marker(folder)
    if marker is None or marker.get("state") != "complete":
        return
    marker["files"][path.name] = path.stat().st_size
    with atomic_path(folder / MARKER) as tmp:
        tmp.write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")


def listed_in_marker(path: str | Path) -> bool:
    """Whether ``path`` is a file its folder's marker lists, i.e. one the toolkit wrote there."""
    path = Path(path)
    marker = _read_marker(path.parent)
    return marker is not None and path.name in marker["files"]


def _listing(names: list[str], more: bool = False) -> str:
    """The first names, then how many others (``and 7 more``; ``and 7+ more`` when the search stopped early)."""
    shown = ", ".join(names[:_MAX_NAMED])
    rest = max(len(names) - _MAX_NAMED, 0) + (1 if more else 0)
    return shown + (f" and {rest}{'+' if more else ''} more" if rest else "")


def _kind_of(marker: dict[str, Any]) -> str | None:
    """The folder's kind; a format-1 marker (no ``kind``) is recognised by the files it lists, else None."""
    kind = marker.get("kind")
    if isinstance(kind, str):
        return kind
    files = marker["files"]
    for legacy, name in _LEGACY_KIND_BY_FILE:
        if name in files or (name.endswith("/") and any(f.startswith(name) for f in files)):
            return legacy
    return None


def _describe(kind: str) -> str:
    return FOLDER_KINDS.get(kind, f"{kind} folder")


def _top_level(path: Path, cap: int = 1000) -> tuple[list[str], bool]:
    """Up to ``cap`` names in ``path`` (folders with a trailing /), sorted, and whether there were more. Never
    descends: a user's folder given by mistake (``/``, ``~``) is refused at once, not after walking it."""
    names, more = [], False
    with os.scandir(path) as it:
        for entry in it:
            if len(names) == cap:
                more = True
                break
            names.append(entry.name + ("/" if entry.is_dir(follow_symlinks=False) else ""))
    return sorted(names), more


def _foreign_entries(path: Path, files: dict[str, Any], cap: int = _MAX_NAMED + 1) -> tuple[list[str], bool]:
    """Entries under the toolkit folder ``path`` that its marker does not list: files, and non-empty folders that
    hold nothing the toolkit wrote (named with a trailing /, not walked). Stops after ``cap``; returns whether
    there were more."""
    listed_dirs = {p.as_posix() for f in files for p in Path(f).parents if p != Path(".")}
    found: list[str] = []
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(path / rel if rel else path) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            name = f"{rel}/{e.name}" if rel else e.name
            if name == MARKER or name in files:
                continue
            if e.is_dir(follow_symlinks=False):
                if name in listed_dirs:
                    stack.append(name)
                    continue
                with os.scandir(e.path) as sub:
                    if next(sub, None) is None:
                        continue  # an empty folder holds nothing to lose
                name += "/"
            if len(found) == cap:
                return sorted(found), True
            found.append(name)
    return sorted(found), False


@dataclass(frozen=True)
class FolderCheck:
    """What :func:`check_replaceable` found at ``path``: :func:`atomic_dir` replaces ``path`` only if it is still
    the same folder (another command may have written it meanwhile)."""

    path: Path
    kind: str
    state: tuple | None  # (device, inode, marker bytes) of the folder; None when it was absent

    def changed(self) -> bool:
        return _state(self.path) != self.state


def _state(path: Path) -> tuple | None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    try:
        marker = (path / MARKER).read_bytes()
    except OSError:
        marker = None
    return st.st_dev, st.st_ino, marker


def check_replaceable(path: str | Path, kind: str) -> FolderCheck:
    """UsageError unless ``path`` may be replaced by a ``kind`` folder (see :data:`FOLDER_KINDS`): absent, empty,
    or a folder of the same kind that the toolkit wrote and that holds only the files it wrote. A user's folder
    given by mistake (``--out ~/WIDER``), a run folder the user added notes to, or a toolkit folder of another
    kind (``--report-dir workspace/checkpoints/toy``) is never deleted. OSError when ``path`` could not be written
    (a file in the way, read-only). Returns what it found, for :func:`atomic_dir` to see whether it changed."""
    from .errors import UsageError

    path = Path(os.path.abspath(path))  # named absolutely; "." and "x/.." become real folder names
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UsageError(f"{path}: exists and is not a folder; choose another folder")
    _check_writable(path.parent)  # found now, not after hours of work
    check = FolderCheck(path, kind, _state(path))
    if not path.exists():
        return check
    marker = _read_marker(path)
    if marker is not None and marker.get("state") == "reserved" and _only_marker(path):
        pid = marker.get("pid")
        if marker.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() \
                and _pid_alive(pid):
            raise UsageError(f"{path}: reserved by a running ssh-toolkit (pid {pid}); choose another folder")
        return check  # reserved for this process (default_run_dir), or by one that is gone
    if marker is None or marker.get("state") != "complete":
        present, more = _top_level(path)
        if not present:
            return check
        raise UsageError(f"{path}: exists and was not written by ssh-toolkit (no {MARKER}); it holds "
                         f"{_listing(present, more)}; choose another folder or remove it")
    found = _kind_of(marker)
    if found is None:
        raise UsageError(f"{path}: written by an older ssh-toolkit that did not record what kind of folder it is, "
                         f"and its files do not say; not replaced by a {_describe(kind)}: choose another folder or "
                         f"remove it")
    if found != kind:
        raise UsageError(f"{path}: is a {_describe(found)} written by ssh-toolkit, not a {_describe(kind)}; "
                         f"not replaced: choose another folder")
    # A file the toolkit wrote is its own even if changed since (a damaged IR is converted again).
    foreign, more = _foreign_entries(path, marker["files"])
    if foreign:
        raise UsageError(f"{path}: holds files ssh-toolkit did not write: {_listing(foreign, more)}; move them "
                         f"away or choose another folder (nothing was deleted)")
    return check


def reserve_dir(path: str | Path) -> None:
    """Create the folder ``path`` exclusively (FileExistsError when taken), holding only a marker that names this
    process and host, so that a reservation a killed process left is recognised (:func:`remove_stale_reservations`)."""
    path = Path(path)
    os.mkdir(path)
    try:
        _write_marker(path, "reserved", "run")  # for a run or compare folder: replaced by either
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise


def _only_marker(path: Path) -> bool:
    try:
        return os.listdir(path) == [MARKER]
    except OSError:
        return False


def release_reserved(path: str | Path) -> bool:
    """Remove ``path`` if it is still only a reservation (its marker, nothing else); whether it was removed."""
    path = Path(path)
    try:
        if not _only_marker(path):
            return False
        marker = _read_marker(path)
        if marker is None or marker.get("state") != "reserved":
            return False
        (path / MARKER).unlink()
        path.rmdir()
    except OSError:
        return False
    return True


def remove_stale_reservations(directory: str | Path) -> list[Path]:
    """Remove the reserved, still empty folders in ``directory`` whose process (on this host) is gone: what kill -9
    or a crash of a run left. A folder without the reservation marker, or holding anything else, is kept."""
    removed = []
    for entry in _entries(directory):
        try:
            if entry.is_symlink() or not entry.is_dir():
                continue
        except OSError:
            continue
        marker = _read_marker(Path(entry.path))
        if (marker is None or marker.get("state") != "reserved" or marker.get("host") != socket.gethostname()
                or not isinstance(marker.get("pid"), int) or _pid_alive(marker["pid"])):
            continue
        if release_reserved(entry.path):
            removed.append(Path(entry.path))
    return removed


def _remove_owned(folder: Path) -> None:
    """Delete the files ``folder``'s marker lists, the marker, then the folders left empty; keep anything else."""
    marker = _read_marker(folder)
    for name in (marker or {}).get("files", {}):
        target = folder / name
        if ".." not in Path(name).parts:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
    with contextlib.suppress(FileNotFoundError):
        (folder / MARKER).unlink()
    for dirpath, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):
            os.rmdir(dirpath)  # only succeeds when empty


def remove_owned_dir(path: str | Path, kind: str) -> bool:
    """Remove ``path`` when it is a complete ``kind`` folder the toolkit wrote (the rule of
    :func:`check_replaceable`: a folder holding anything else is refused, UsageError); True if one was removed."""
    path = Path(os.path.abspath(path))
    check_replaceable(path, kind)
    marker = _read_marker(path) if path.is_dir() else None
    if marker is None or marker.get("state") != "complete":
        return False
    with _swap_lock(path):
        _remove_owned(path)
    return True


@contextlib.contextmanager
def _swap_lock(path: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``path`` exclusively while the toolkit compares and swaps ``path``, so two
    commands finishing at the same moment take turns. The lock file is removed on release; a killed holder's
    lock is released by the kernel (``flock``), so it never goes stale."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the change check alone
        yield
        return
    lock = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False  # the previous holder removed it after we opened it: take a fresh one
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, kind: str, checked: FolderCheck | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; it replaces ``path`` only if the block succeeds.

    ``kind`` says what the folder is (:data:`FOLDER_KINDS`); the finished folder carries :data:`MARKER` with the
    kind and the files written into it, with sizes. An existing ``path`` is replaced only under the rule of
    :func:`check_replaceable` (checked before and again just before the swap), and even then only the files the
    toolkit wrote are deleted. If ``path`` changed between the first check (``checked``, made by the caller
    before its work, or made here) and the swap, another command wrote it meanwhile: UsageError, and this
    result is dropped rather than replacing that one. Temporary folders that a killed process left beside
    ``path`` are removed. An OSError names ``path``.
    """
    from .errors import UsageError

    path = Path(os.path.abspath(path))
    tmp: Path | None = None
    try:
        if checked is None or checked.path != path or checked.kind != kind:
            checked = check_replaceable(path, kind)
        make_dirs(path.parent)
        remove_stale_temporaries(path.parent)
        tmp = _temp_name(path, "tmp")
        tmp.mkdir(0o755)
        _write_marker(tmp, "writing", kind)  # says whose folder this is until the work is done
        yield tmp
        _write_marker(tmp, "complete", kind)
        old = None
        with _swap_lock(path):
            check_replaceable(path, kind)  # the user may have added files while we worked
            if checked.changed():
                raise UsageError(f"{path}: was written by another command while this one worked (it changed "
                                 f"since it was checked); this result was not written, the other one is kept: "
                                 f"choose another folder or run again")
            if path.exists():
                old = _temp_name(path, "old")
                os.replace(path, old)
                try:
                    os.replace(tmp, path)
                except BaseException:
                    os.replace(old, path)  # put the previous version back
                    raise
            else:
                os.replace(tmp, path)
        if old is not None:
            _remove_owned(old)
    except OSError as e:
        _name_error(e, path, tmp)
        raise
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def library_write_error(path: str | Path, nbytes: int, detail: str) -> OSError:
    """The OSError for a write a library (MXNet's C++ writer) reported as failed without an errno: "No space left
    on device" when the disk holds less than the ``nbytes`` it was writing, else "write failed (<detail>)"."""
    path = Path(path)
    folder = next((p for p in path.parents if p.exists()), Path("."))
    try:
        full = shutil.disk_usage(folder).free < nbytes
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return OSError(errno.EIO, f"write failed ({' '.join(detail.split())})", str(path))


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="backslashreplace")  # a non-UTF-8 path: escaped
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
