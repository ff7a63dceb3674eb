"""Get the real SSH checkpoint into the workspace: download, verify, unpack -> :class:`Checkpoint`.

Three ways in, all ending in ``workspace.checkpoint_dir("real")`` with a ``checkpoint.json`` record:

* :func:`download_checkpoint` streams the archive from the card's sources (``checkpoint.urls`` then
  ``checkpoint.mirrors``) into ``downloads/<archive>.part``, resuming with HTTP Range, retrying transient
  failures with exponential backoff and falling through to the next source. The payload is checked
  (HTML page? size? sha256?) before it is renamed to ``downloads/<archive>`` and unpacked.
* ``archive=PATH`` imports an archive the user already has, with the same checks.
* :func:`import_checkpoint_files` copies already-unpacked ``<prefix>-symbol.json`` +
  ``<prefix>-<epoch:04d>.params`` (the card holds no per-file checksum, so the naming, the format and the
  parameter count, the card's ``reference.params``, are checked).

Whichever way they come, the two files are checked to be an MXNet checkpoint (the symbol parses, the params parse
and hold every argument of the symbol) before they are accepted, without starting MXNet (:mod:`.mxnet_format`).

The original Dropbox link has been dead since 2021, so the error raised when every source fails says how
to supply the archive instead. Every error is an :class:`InputDataError` (or :class:`UsageError`) with a
one-line message; no half-written file is left under its final name.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from . import __version__
from .card import CheckpointSpec, ModelCard
from .errors import InputDataError, UsageError
from .fileio import atomic_dir, check_replaceable, sha256_file, write_json
from .mxnet_format import ARG_PREFIX, CheckpointInfo, MXNetFormatError, check_checkpoint
from .workspace import Checkpoint, Workspace

log = logging.getLogger(__name__)

KIND = "real"
PROVENANCE = "source.json"  # beside checkpoint.json: where the files came from
CHUNK = 1 << 16
DEAD_LINK_NOTE = "the original Dropbox link has been dead since 2021"
_HTML_HEADS = (b"<!doctype", b"<html")
_RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_LISTED = 12  # archive members named in an error message


# ------------------------------------------------------------------------------------------------------------
# Public API


def download_checkpoint(
    card: ModelCard,
    workspace: Workspace,
    *,
    archive: Path | str | None = None,
    from_dir: Path | str | None = None,
    sources: Sequence[str] | None = None,
    mirrors: Sequence[str] = (),
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool = True,
    force: bool = False,
) -> Checkpoint:
    """Make the real checkpoint available in ``workspace`` and return its record.

    ``archive``: import this zip instead of downloading (verified against the card's size and sha256).
    ``from_dir``: import already-unpacked files (naming checked only). At most one of the two.
    ``sources``: URLs to try instead of the card's; ``mirrors``: extra URLs tried *before* them.
    Without ``archive``/``from_dir``, an up-to-date checkpoint (see :func:`find_checkpoint`; ignored with
    ``force``) or an already-verified ``downloads/<archive>`` is reused without any download.
    """
    if archive is not None and from_dir is not None:
        raise UsageError("give either an archive or a directory of unpacked files, not both")
    spec = card.checkpoint
    dest = workspace.checkpoint_dir(KIND)
    if archive is not None:
        path = Path(archive)
        if path.is_dir():
            raise UsageError(f"{path}: is a directory; import unpacked files with --from-dir instead")
        verify_archive(path, spec.size, spec.sha256)
        return unpack_archive(path, spec, dest, card.input.name)
    if from_dir is not None:
        return import_checkpoint_files(from_dir, card, workspace)

    if not force:
        current = find_checkpoint(card, workspace)
        if current is not None:
            log.info("%s: up to date (%s)", dest, current.params_sha256)
            return current
    check_replaceable(dest, "checkpoint")  # a folder we may not replace is found before minutes of download
    final = workspace.downloads / spec.archive
    if final.exists():
        try:
            verify_archive(final, spec.size, spec.sha256)
        except InputDataError as e:
            log.warning("%s; deleting it and downloading again", e)
            final.unlink()
    if not final.exists():
        fetch_archive(card, workspace, sources=_source_list(spec, sources, mirrors), retries=retries,
                      backoff=backoff, timeout=timeout, progress=progress)
    return unpack_archive(final, spec, dest, card.input.name)


def find_checkpoint(card: ModelCard, workspace: Workspace) -> Checkpoint | None:
    """The workspace's real checkpoint if it is complete and matches the card, else None.

    Complete: the record loads, names the card's prefix and epoch, the params file still has the recorded
    sha256, and (if it came from an archive) that archive had the card's sha256.
    """
    spec = card.checkpoint
    directory = workspace.checkpoint_dir(KIND)
    try:
        ck = Checkpoint.load(directory)
    except InputDataError:
        return None
    if (ck.kind, ck.prefix, ck.epoch) != (KIND, spec.prefix, spec.epoch):
        return None
    try:
        prov = json.loads((directory / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        prov = {}
    if prov.get("archive_sha256") not in (None, spec.sha256):
        return None
    if sha256_file(ck.params_path) != ck.params_sha256:
        return None
    if prov.get("archive_sha256") is None:  # imported unpacked files: no checksum vouches for them
        try:
            check_parameter_count(check_checkpoint(ck.symbol_path, ck.params_path, card.input.name), ck.params_path,
                                  card)
        except InputDataError:
            return None
    return ck


def _refuse_a_standin(src: Path) -> None:
    """A folder the toolkit wrote a stand-in into says so in its checkpoint.json (the standin has the real
    architecture, so its parameter count alone cannot tell)."""
    rec = src / Checkpoint.RECORD
    try:
        kind = json.loads(rec.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(kind, str) and kind != KIND:
        raise InputDataError(f"{rec}: these files are the toolkit's {kind} checkpoint (stand-in weights), not the "
                             f"real weights; use '--weights {kind}' instead")


def parameter_count(info: CheckpointInfo) -> int:
    """The number of learned parameters of a checkpoint: the elements of every argument of its symbol."""
    total = 0
    for name in info.symbol.arguments:
        n = 1
        for d in info.params[ARG_PREFIX + name].shape:
            n *= d
        total += n
    return total


def check_parameter_count(info: CheckpointInfo, params_path: Path, card: ModelCard) -> None:
    """InputDataError unless the checkpoint has the card's ``reference.params``: unpacked files carry no
    checksum, so this is what tells the real model from a stand-in (or another network) given by mistake."""
    n = parameter_count(info)
    if n != card.reference_params:
        raise InputDataError(f"{params_path}: holds {n:,} parameters, not the {card.reference_params:,} of "
                             f"{card.name} (reference.params in {card.path}): not the real weights (stand-ins are "
                             f"made with 'ssh-toolkit synthesize')")


def fetch_archive(
    card: ModelCard,
    workspace: Workspace,
    *,
    sources: Sequence[str] | None = None,
    retries: int = 3,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download and verify ``downloads/<archive>``; return its path. Raises one-line InputDataError.

    Each source gets ``1 + retries`` attempts for transient failures (connection errors, timeouts, HTTP
    5xx/408/429, a body cut short), sleeping ``backoff * 2**k`` seconds between them; a partial
    ``.part`` is resumed with a Range request. Other HTTP errors (404, 403...), an HTML page or a payload
    of the wrong size or sha256 move on to the next source at once. A bad payload's ``.part`` is deleted;
    a ``.part`` cut short by the network is kept so the next run resumes it.
    """
    spec = card.checkpoint
    urls = list(spec.sources if sources is None else sources)
    final = workspace.downloads / spec.archive
    part = final.with_name(final.name + ".part")
    final.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        reason = _fetch_from(url, part, spec, retries=max(0, retries), backoff=backoff, timeout=timeout,
                             progress=progress)
        if reason is None:
            os.replace(part, final)
            log.info("%s: downloaded from %s", final, url)
            return final
        log.info("%s: %s", url, reason)
        failures.append(f"{url}: {reason}")
    raise InputDataError(_all_failed_message(card, failures, part))


def verify_archive(path: Path | str, size: int, sha256: str) -> None:
    """Raise InputDataError unless ``path`` is a non-HTML file of ``size`` bytes with ``sha256``."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: archive not found")
    with open(path, "rb") as f:
        head = f.read(512)
    if _looks_like_html(head):
        raise InputDataError(f"{path}: is an HTML page, not a zip archive (dead Dropbox links serve HTML); "
                             f"expected {size} bytes with sha256 {sha256}")
    actual_size = path.stat().st_size
    if actual_size != size:
        raise InputDataError(f"{path}: size mismatch: expected {size} bytes, got {actual_size} bytes "
                             f"(truncated or a different file)")
    actual = sha256_file(path)
    if actual != sha256:
        raise InputDataError(f"{path}: sha256 mismatch: expected {sha256}, got {actual}")


def unpack_archive(path: Path | str, spec: CheckpointSpec, dest: Path | str, input_name: str = "data") -> Checkpoint:
    """Extract ``<prefix>-symbol.json`` and ``<prefix>-<epoch:04d>.params`` from the zip into ``dest``.

    The two files may sit at the top of the archive or in one folder. Only they are written, under their
    plain names, and ``dest`` is replaced as a whole (nothing is left if anything fails). The archive is
    not verified here; call :func:`verify_archive` first. The extracted pair must be a valid MXNet checkpoint
    with the graph input ``input_name`` (:func:`~ssh_toolkit.mxnet_format.check_checkpoint`), else
    InputDataError naming the archive member and what is wrong.
    """
    path, dest = Path(path), Path(dest)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
            unsafe = [n for n in names if not _safe_member(n)]
            if unsafe:
                raise InputDataError(f"{path}: refusing an archive with unsafe member name {unsafe[0]!r}")
            folder = _find_pair(names, spec.symbol_file, spec.params_file, str(path))
            with atomic_dir(dest, kind="checkpoint") as tmp:
                for name in (spec.symbol_file, spec.params_file):
                    with zf.open(_join(folder, name)) as src, open(tmp / name, "wb") as out:
                        shutil.copyfileobj(src, out, CHUNK)
                try:
                    check_checkpoint(tmp / spec.symbol_file, tmp / spec.params_file, input_name)
                except MXNetFormatError as e:
                    raise InputDataError(f"{path}: member {_join(folder, e.path.name)}: {e.reason}") from None
                return _record(tmp, dest, spec, {"from": "archive", "archive": str(path.resolve()),
                                                 "archive_sha256": sha256_file(path),
                                                 "member_folder": folder})
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        raise InputDataError(f"{path}: not a readable zip archive (truncated or corrupt: {e})") from None


def import_checkpoint_files(directory: Path | str, card: ModelCard, workspace: Workspace) -> Checkpoint:
    """Copy already-unpacked checkpoint files from ``directory`` (or one folder below) into the workspace.

    Model Optimizer needs ``<prefix>-symbol.json`` beside ``<prefix>-<epoch:04d>.params``; any other naming
    is refused with a message listing the expected and the found names. The two files must form a valid MXNet
    checkpoint (:func:`~ssh_toolkit.mxnet_format.check_checkpoint`); a bad one is refused naming the file.
    """
    spec = card.checkpoint
    directory = Path(directory)
    if directory.is_file():
        hint = "; import an archive with --archive" if zipfile.is_zipfile(directory) else ""
        raise UsageError(f"{directory}: is a file, expected a directory of unpacked checkpoint files{hint}")
    if not directory.is_dir():
        raise InputDataError(f"{directory}: directory not found")
    names = [p.relative_to(directory).as_posix() for p in sorted(directory.rglob("*"))
             if p.is_file() and len(p.relative_to(directory).parts) <= 2]
    folder = _find_pair(names, spec.symbol_file, spec.params_file, str(directory), unpacked=True)
    src = directory / folder if folder else directory
    info = check_checkpoint(src / spec.symbol_file, src / spec.params_file, card.input.name)
    _refuse_a_standin(src)
    check_parameter_count(info, src / spec.params_file, card)
    dest = workspace.checkpoint_dir(KIND)
    with atomic_dir(dest, kind="checkpoint") as tmp:
        for name in (spec.symbol_file, spec.params_file):
            shutil.copyfile(src / name, tmp / name)
        return _record(tmp, dest, spec, {"from": "directory", "directory": str(src.resolve()),
                                         "verified": "file naming, format and parameter count (reference.params); "
                                                     "the card holds no per-file checksum"})


# ------------------------------------------------------------------------------------------------------------
# Downloading


class _Retry(Exception):
    """A transient failure: try the same source again (resuming)."""


class _GiveUp(Exception):
    """This source cannot deliver the archive: move on to the next one."""


def _source_list(spec: CheckpointSpec, sources: Sequence[str] | None, mirrors: Sequence[str]) -> list[str]:
    base = list(spec.sources if sources is None else sources)
    out: list[str] = []
    for u in [*mirrors, *base]:
        if u not in out:
            out.append(u)
    return out


def _fetch_from(url: str, part: Path, spec: CheckpointSpec, *, retries: int, backoff: float, timeout: float,
                progress: bool) -> str | None:
    """Try one source until ``part`` holds the verified archive. Returns None, or a short failure reason."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        return f"unsupported URL scheme {scheme or '(none)'!r}"
    resumed_foreign = part.exists() and part.stat().st_size > 0  # bytes from an earlier run or source
    attempts, last = 0, "no attempt"
    while attempts <= retries:
        attempts += 1
        try:
            _download_once(url, part, spec, timeout=timeout, progress=progress)
        except _Retry as e:
            last = str(e)
            if attempts <= retries:
                delay = backoff * 2 ** (attempts - 1)
                log.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url, e, delay, attempts + 1,
                            retries + 1)
                time.sleep(delay)
            continue
        except _GiveUp as e:
            return str(e)
        try:
            verify_archive(part, spec.size, spec.sha256)
        except InputDataError as e:
            part.unlink(missing_ok=True)
            if resumed_foreign and attempts <= retries:
                # The .part began with bytes from elsewhere; fetch the whole file from this source once.
                resumed_foreign = False
                last = "payload failed verification after resuming an older partial download"
                continue
            return _short_verify_reason(str(e), part)
        return None
    return f"{last} ({attempts} attempt{'s' if attempts != 1 else ''})"


def _download_once(url: str, part: Path, spec: CheckpointSpec, *, timeout: float, progress: bool) -> None:
    """One request: append to (or restart) ``part`` until it holds ``spec.size`` bytes."""
    from tqdm import tqdm

    size = spec.size
    offset = part.stat().st_size if part.exists() else 0
    if offset > size:
        part.unlink()
        offset = 0
    if offset == size:
        return  # complete from an earlier run; the caller verifies it
    headers = {"User-Agent": f"ssh-toolkit/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            part.unlink()  # our partial does not fit this file; start over
            raise _Retry("HTTP 416 for a resumed download, restarting from zero") from None
        if e.code in _RETRY_STATUS:
            raise _Retry(f"HTTP {e.code}") from None
        raise _GiveUp(f"HTTP {e.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        if isinstance(getattr(e, "reason", None), FileNotFoundError):
            raise _GiveUp("file not found") from None
        raise _Retry(_net_reason(e)) from None

    with resp:
        status = resp.status or 200  # file:// has no status
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if ctype.startswith(("text/html", "application/xhtml")):
            kind = ctype.split(";")[0]
            raise _GiveUp(f"served an HTML page ({kind}), not a zip: the link is probably dead")
        length = _int_or_none(resp.headers.get("Content-Length"))
        mode = "ab"
        if status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if total is not None and total != size:
                raise _GiveUp(f"size mismatch: server reports {total} bytes, expected {size}")
            if start != offset:
                part.unlink()
                raise _Retry(f"server resumed at byte {start} instead of {offset}, restarting from zero")
        else:
            if offset:
                log.info("%s: server ignored the Range request; restarting from zero", url)
            offset, mode = 0, "wb"
            if length is not None and length != size:
                raise _GiveUp(f"size mismatch: server reports {length} bytes, expected {size}")

        bar = tqdm(total=size, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                   desc=spec.archive, disable=not progress, leave=False)
        received = offset
        with bar, open(part, mode) as out:
            first = offset == 0
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Retry(f"connection broken after {received} of {size} bytes ({_net_reason(e)})") \
                        from None
                if not chunk:
                    break
                if first:
                    first = False
                    if _looks_like_html(chunk):
                        out.close()
                        part.unlink(missing_ok=True)
                        raise _GiveUp("served an HTML page, not a zip: the link is probably dead")
                if received + len(chunk) > size:
                    out.close()
                    part.unlink(missing_ok=True)
                    raise _GiveUp(f"size mismatch: server sent more than the expected {size} bytes")
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if received < size:
        raise _Retry(f"connection dropped after {received} of {size} bytes")


def _all_failed_message(card: ModelCard, failures: list[str], part: Path) -> str:
    spec = card.checkpoint
    what = "; ".join(failures) if failures else "no source URLs in checkpoint.urls or checkpoint.mirrors"
    kept = f" A partial download is kept in {part}; rerun to resume it." if part.exists() else ""
    return (f"{spec.archive}: download failed ({what}). Note: {DEAD_LINK_NOTE}. Get the archive elsewhere "
            f"({spec.size} bytes, sha256 {spec.sha256}) and run 'ssh-toolkit download --archive PATH', "
            f"or add a mirror URL to checkpoint.mirrors in {card.path}.{kept}")


def _short_verify_reason(message: str, part: Path) -> str:
    # "<path>.part: sha256 mismatch: ..." -> "sha256 mismatch for <archive>: ..."
    prefix = f"{part}: "
    body = message[len(prefix):] if message.startswith(prefix) else message
    head, _, rest = body.partition(": ")
    name = part.name.removesuffix(".part")
    return f"{head} for {name}: {rest}" if rest else f"{body} ({name})"


def _net_reason(e: BaseException) -> str:
    reason = getattr(e, "reason", e)
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    text = str(reason) or type(reason).__name__
    return text.splitlines()[0][:120]


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _looks_like_html(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_HEADS)


# ------------------------------------------------------------------------------------------------------------
# Unpacking and importing


def _safe_member(name: str) -> bool:
    if "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and not re.match(r"^[A-Za-z]:", name)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _find_pair(names: Sequence[str], symbol: str, params: str, where: str, *, unpacked: bool = False) -> str:
    """The folder ("" = top level, or one folder down) holding both files; InputDataError otherwise."""
    folders: dict[str, set[str]] = {}
    for n in names:
        p = PurePosixPath(n)
        if len(p.parts) > 2 or (p.parts and p.parts[0] == "__MACOSX"):
            continue
        folders.setdefault(p.parent.as_posix() if len(p.parts) == 2 else "", set()).add(p.name)
    hits = sorted(f for f, files in folders.items() if {symbol, params} <= files)
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise InputDataError(f"{where}: {symbol} and {params} appear in several folders "
                             f"({', '.join(h or '.' for h in hits)}); keep only one copy")
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names)} files)"
    need = (f"expected {symbol} and {params} (Model Optimizer finds <prefix>-symbol.json from the name "
            f"<prefix>-<epoch:04d>.params)")
    if unpacked:
        hint = ""
        found_params = [PurePosixPath(n).name for n in names if n.endswith(".params")]
        if len(found_params) == 1 and found_params[0] != params:
            hint = f" (rename {found_params[0]} to {params}?)"
        raise InputDataError(f"{where}: {need}{hint}; found: {shown or 'no files'}")
    raise InputDataError(f"{where}: archive does not hold the checkpoint: {need} at the top or in one "
                         f"folder; it holds: {shown or 'nothing'}")


def _record(tmp: Path, dest: Path, spec: CheckpointSpec, provenance: dict) -> Checkpoint:
    """Write checkpoint.json and source.json into ``tmp`` (about to become ``dest``); return the record."""
    sha = sha256_file(tmp / spec.params_file)
    Checkpoint(tmp, spec.prefix, spec.epoch, KIND, sha).save()
    write_json(tmp / PROVENANCE, {**provenance, "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return Checkpoint(dest, spec.prefix, spec.epoch, KIND, sha)
