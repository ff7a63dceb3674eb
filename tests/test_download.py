"""download.py against a local HTTP server (127.0.0.1 only) serving a small generated zip."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import shutil
import threading
import zipfile

import numpy as np
import pytest
from mxnet_files import nd_list, symbol_json

from ssh_toolkit.card import load_card
from ssh_toolkit.download import (
    download_checkpoint,
    fetch_archive,
    find_checkpoint,
    import_checkpoint_files,
    unpack_archive,
    verify_archive,
)
from ssh_toolkit.errors import InputDataError, UsageError
from ssh_toolkit.workspace import Checkpoint, Workspace

SYMBOL = symbol_json()
# Random "weights" hardly compress: the zip spans several read chunks.
PARAMS = nd_list({"arg:conv_weight": np.random.default_rng(0).standard_normal((25, 4, 16, 16)).astype(np.float32),
                  "arg:conv_bias": np.zeros(25, np.float32)})


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


GOOD_ZIP = make_zip({"ssh-model-final/sshb-symbol.json": SYMBOL, "ssh-model-final/sshb-0000.params": PARAMS,
                     "ssh-model-final/README.txt": b"hello"})
HTML = b"<!DOCTYPE html><html><body>Dropbox - Error (404)</body></html>"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------------------
# A tiny configurable server


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.requests.append((self.path, self.headers.get("Range")))
            n = sum(1 for p, _ in srv.requests if p == self.path)
        route = srv.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        if n <= route.get("fail_first", 0):
            self.send_error(500)
            return
        data: bytes = route["data"]
        start = 0
        rng = self.headers.get("Range")
        if rng and not route.get("ignore_range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", route.get("type", "application/zip"))
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        body = data[start:]
        if n <= route.get("drop_first", 0):
            body = body[: route["drop_after"]]  # then close: a short read
        self.wfile.write(body)


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.routes, srv.requests, srv.lock = {}, [], threading.Lock()
    srv.url = lambda path: f"http://127.0.0.1:{srv.server_address[1]}{path}"
    t = threading.Thread(target=srv.serve_forever, args=(0.01,), daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


N_PARAMS = 25 * 4 * 16 * 16 + 25  # conv_weight + conv_bias of PARAMS


def card_for(data: bytes, urls=(), mirrors=()):
    card = load_card()
    spec = dataclasses.replace(card.checkpoint, size=len(data), sha256=sha(data), urls=tuple(urls),
                               mirrors=tuple(mirrors))
    return dataclasses.replace(card, checkpoint=spec, reference_params=N_PARAMS)  # the test checkpoint is "real"


@pytest.fixture()
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


def fetch(card, ws, **kw):
    kw = {"retries": 2, "backoff": 0.0, "timeout": 5.0, "progress": False, **kw}
    return download_checkpoint(card, ws, **kw)


def assert_no_leftovers(ws: Workspace, card) -> None:
    name = card.checkpoint.archive
    assert not (ws.downloads / name).exists()
    assert not (ws.downloads / f"{name}.part").exists()
    assert not ws.checkpoint_dir("real").exists()


def assert_good_checkpoint(ck: Checkpoint, ws: Workspace) -> None:
    assert ck.directory == ws.checkpoint_dir("real") and ck.kind == "real" and not ck.is_standin
    assert ck.symbol_path.read_bytes() == SYMBOL
    assert ck.params_path.read_bytes() == PARAMS
    assert ck.params_sha256 == sha(PARAMS)
    assert Checkpoint.load(ck.directory) == ck
    assert sorted(p.name for p in ck.directory.iterdir()) == [
        ".ssh-toolkit.json", "checkpoint.json", "source.json", "sshb-0000.params", "sshb-symbol.json"]


# ------------------------------------------------------------------------------------------------------------
# Downloading


def test_download_success(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    ck = fetch(card, ws)
    assert_good_checkpoint(ck, ws)
    assert (ws.downloads / card.checkpoint.archive).read_bytes() == GOOD_ZIP
    assert not (ws.downloads / f"{card.checkpoint.archive}.part").exists()


def test_resume_partial_download(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    part = ws.downloads / f"{card.checkpoint.archive}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(GOOD_ZIP[:1000])
    fetch(card, ws)
    assert server.requests == [("/a.zip", "bytes=1000-")]
    assert sha((ws.downloads / card.checkpoint.archive).read_bytes()) == card.checkpoint.sha256


def test_resume_when_server_ignores_range(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP, "ignore_range": True}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    part = ws.downloads / f"{card.checkpoint.archive}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(GOOD_ZIP[:1000])
    assert_good_checkpoint(fetch(card, ws), ws)  # restarted from zero, not appended


def test_connection_dropped_midway_is_resumed(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP, "drop_first": 1, "drop_after": 5000}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    assert_good_checkpoint(fetch(card, ws), ws)
    assert server.requests == [("/a.zip", None), ("/a.zip", "bytes=5000-")]


def test_retry_after_server_errors(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP, "fail_first": 2}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    assert_good_checkpoint(fetch(card, ws, retries=2), ws)
    assert len(server.requests) == 3


def test_mirror_fallback_after_404_without_retrying(server, ws):
    server.routes["/mirror.zip"] = {"data": GOOD_ZIP}
    card = card_for(GOOD_ZIP, urls=[server.url("/dead.zip")], mirrors=[server.url("/mirror.zip")])
    assert_good_checkpoint(fetch(card, ws, retries=3), ws)
    assert [p for p, _ in server.requests] == ["/dead.zip", "/mirror.zip"]


def test_extra_mirrors_are_tried_first(server, ws):
    server.routes["/extra.zip"] = {"data": GOOD_ZIP}
    card = card_for(GOOD_ZIP, urls=[server.url("/dead.zip")])
    assert_good_checkpoint(fetch(card, ws, mirrors=[server.url("/extra.zip")]), ws)
    assert [p for p, _ in server.requests] == ["/extra.zip"]


def test_checksum_mismatch(server, ws):
    wrong = make_zip({"sshb-symbol.json": SYMBOL, "sshb-0000.params": PARAMS[::-1]})
    server.routes["/a.zip"] = {"data": wrong}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    card = dataclasses.replace(card, checkpoint=dataclasses.replace(card.checkpoint, size=len(wrong)))
    with pytest.raises(InputDataError) as ei:
        fetch(card, ws)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "sha256 mismatch" in msg and card.checkpoint.archive in msg
    assert sha(GOOD_ZIP) in msg and sha(wrong) in msg
    assert len(server.requests) == 1  # a wrong payload is not retried
    assert_no_leftovers(ws, card)


def test_truncated_download_is_a_size_mismatch(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP[:-100]}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    n = len(GOOD_ZIP)
    with pytest.raises(InputDataError, match=rf"size mismatch.*{n - 100} bytes, expected {n}"):
        fetch(card, ws)
    assert_no_leftovers(ws, card)


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_payload(server, ws, ctype):
    server.routes["/a.zip"] = {"data": HTML + b" " * 100, "type": ctype}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    card = dataclasses.replace(card, checkpoint=dataclasses.replace(card.checkpoint, size=len(HTML) + 100))
    with pytest.raises(InputDataError, match="HTML page") as ei:
        fetch(card, ws)
    assert "dead since 2021" in str(ei.value)
    assert len(server.requests) == 1
    assert_no_leftovers(ws, card)


def test_all_sources_fail_one_line(server, ws):
    server.routes["/flaky.zip"] = {"data": GOOD_ZIP, "fail_first": 99}
    card = card_for(GOOD_ZIP, urls=[server.url("/dead.zip")], mirrors=[server.url("/flaky.zip")])
    with pytest.raises(InputDataError) as ei:
        fetch(card, ws, retries=2)
    msg = str(ei.value)
    assert "\n" not in msg
    assert f"{server.url('/dead.zip')}: HTTP 404" in msg
    assert f"{server.url('/flaky.zip')}: HTTP 500 (3 attempts)" in msg
    assert "dead since 2021" in msg
    assert "ssh-toolkit download --archive PATH" in msg and card.checkpoint.sha256 in msg
    assert "checkpoint.mirrors" in msg
    assert [p for p, _ in server.requests].count("/dead.zip") == 1
    assert_no_leftovers(ws, card)


def test_connection_refused_is_retried_then_reported(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP, "drop_first": 99, "drop_after": 3000}
    port = server.server_address[1]
    server.shutdown()
    server.server_close()  # nothing listens on this port any more
    card = card_for(GOOD_ZIP, urls=[f"http://127.0.0.1:{port}/a.zip"])
    with pytest.raises(InputDataError, match=r"connection refused \(2 attempts\)"):
        fetch(card, ws, retries=1)
    assert not ws.checkpoint_dir("real").exists()


def test_partial_from_dropped_connections_is_kept(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP, "drop_first": 99, "drop_after": 3000}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    with pytest.raises(InputDataError, match="rerun to resume"):
        fetch(card, ws, retries=1)
    part = ws.downloads / f"{card.checkpoint.archive}.part"
    assert part.read_bytes() == GOOD_ZIP[:6000]  # two attempts, 3000 bytes each
    server.routes["/a.zip"] = {"data": GOOD_ZIP}
    assert_good_checkpoint(fetch(card, ws), ws)
    assert server.requests[-1] == ("/a.zip", "bytes=6000-")


def test_no_sources(ws):
    card = card_for(GOOD_ZIP)
    with pytest.raises(InputDataError, match="no source URLs.*--archive PATH"):
        fetch(card, ws)


def test_skip_when_up_to_date(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP}
    card = card_for(GOOD_ZIP, urls=[server.url("/a.zip")])
    first = fetch(card, ws)
    assert find_checkpoint(card, ws) == first
    assert fetch(card, ws) == first
    assert len(server.requests) == 1
    # A verified archive but no checkpoint: unpack again, no download.
    shutil.rmtree(ws.checkpoint_dir("real"))
    assert find_checkpoint(card, ws) is None
    assert fetch(card, ws) == first
    assert len(server.requests) == 1
    # A tampered params file is not up to date: unpacked again from the verified archive.
    first.params_path.write_bytes(b"tampered")
    assert find_checkpoint(card, ws) is None
    assert_good_checkpoint(fetch(card, ws), ws)
    # force ignores the checkpoint, but a verified archive is still not downloaded again.
    assert_good_checkpoint(fetch(card, ws, force=True), ws)
    # A corrupted archive in downloads/ is deleted and fetched again.
    (ws.downloads / card.checkpoint.archive).write_bytes(b"junk")
    shutil.rmtree(ws.checkpoint_dir("real"))
    assert_good_checkpoint(fetch(card, ws), ws)
    assert len(server.requests) == 2


def test_fetch_archive_with_explicit_sources(server, ws):
    server.routes["/a.zip"] = {"data": GOOD_ZIP}
    card = card_for(GOOD_ZIP, urls=[server.url("/dead.zip")])
    path = fetch_archive(card, ws, sources=[server.url("/a.zip")], backoff=0, progress=False)
    assert path == ws.downloads / card.checkpoint.archive and path.read_bytes() == GOOD_ZIP


# ------------------------------------------------------------------------------------------------------------
# Verifying and unpacking


def test_archive_without_checkpoint_files(server, ws):
    other = make_zip({"model/ssh.json": SYMBOL, "model/ssh.params": PARAMS, "notes.txt": b"x"})
    server.routes["/a.zip"] = {"data": other}
    card = card_for(other, urls=[server.url("/a.zip")])
    with pytest.raises(InputDataError) as ei:
        fetch(card, ws)
    msg = str(ei.value)
    assert "sshb-symbol.json" in msg and "sshb-0000.params" in msg
    assert "model/ssh.json" in msg and "model/ssh.params" in msg and "notes.txt" in msg
    assert not ws.checkpoint_dir("real").exists()
    assert not list(ws.checkpoint_dir("real").parent.glob("*"))  # no temporary directory either


def test_flat_archive_layout(tmp_path, ws):
    flat = make_zip({"sshb-symbol.json": SYMBOL, "sshb-0000.params": PARAMS})
    path = tmp_path / "flat.zip"
    path.write_bytes(flat)
    assert_good_checkpoint(download_checkpoint(card_for(flat), ws, archive=path), ws)


def test_too_deep_archive_layout_is_refused(tmp_path, ws):
    deep = make_zip({"a/b/sshb-symbol.json": SYMBOL, "a/b/sshb-0000.params": PARAMS})
    path = tmp_path / "deep.zip"
    path.write_bytes(deep)
    with pytest.raises(InputDataError, match="it holds: a/b/sshb-symbol.json"):
        download_checkpoint(card_for(deep), ws, archive=path)


def test_path_traversal_is_refused(tmp_path, ws):
    evil = make_zip({"../sshb-symbol.json": SYMBOL, "../sshb-0000.params": PARAMS})
    path = tmp_path / "evil.zip"
    path.write_bytes(evil)
    with pytest.raises(InputDataError, match="unsafe member name"):
        download_checkpoint(card_for(evil), ws, archive=path)
    assert not (ws.root / "checkpoints" / "sshb-symbol.json").exists()
    assert not ws.checkpoint_dir("real").exists()


def test_corrupt_zip_with_matching_checksum(tmp_path, ws):
    bad = GOOD_ZIP[:-200]  # the card "expects" these bytes, but the zip directory is cut off
    path = tmp_path / "bad.zip"
    path.write_bytes(bad)
    with pytest.raises(InputDataError, match="not a readable zip archive"):
        download_checkpoint(card_for(bad), ws, archive=path)
    assert not ws.checkpoint_dir("real").exists()


def test_corrupt_member_data(tmp_path, ws):
    data = bytearray(make_zip({"sshb-symbol.json": SYMBOL, "sshb-0000.params": PARAMS}))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("sshb-0000.params")
    data[info.header_offset + 200] ^= 0xFF  # inside the params member's data: a CRC error on extraction
    path = tmp_path / "crc.zip"
    path.write_bytes(bytes(data))
    card = card_for(bytes(data))
    with pytest.raises(InputDataError, match="truncated or corrupt"):
        unpack_archive(path, card.checkpoint, ws.checkpoint_dir("real"))
    assert not ws.checkpoint_dir("real").exists()


def test_verify_archive_messages(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(GOOD_ZIP)
    verify_archive(path, len(GOOD_ZIP), sha(GOOD_ZIP))
    with pytest.raises(InputDataError, match=rf"x.zip: size mismatch: expected 5 bytes, got {len(GOOD_ZIP)}"):
        verify_archive(path, 5, sha(GOOD_ZIP))
    zeros, actual = "0" * 64, sha(GOOD_ZIP)
    with pytest.raises(InputDataError, match=rf"x.zip: sha256 mismatch: expected {zeros}, got {actual}"):
        verify_archive(path, len(GOOD_ZIP), zeros)
    with pytest.raises(InputDataError, match="archive not found"):
        verify_archive(tmp_path / "missing.zip", 1, "0" * 64)


# ------------------------------------------------------------------------------------------------------------
# Importing what the user already has


def test_archive_import_happy_path(tmp_path, ws):
    path = tmp_path / "my-copy.zip"
    path.write_bytes(GOOD_ZIP)
    ck = download_checkpoint(card_for(GOOD_ZIP), ws, archive=path, progress=False)
    assert_good_checkpoint(ck, ws)
    assert path.read_bytes() == GOOD_ZIP  # the user's file is left alone
    assert find_checkpoint(card_for(GOOD_ZIP), ws) == ck


def test_archive_import_bad_path(tmp_path, ws):
    card = card_for(GOOD_ZIP)
    with pytest.raises(InputDataError, match="nope.zip: archive not found"):
        download_checkpoint(card, ws, archive=tmp_path / "nope.zip")
    truncated = tmp_path / "short.zip"
    truncated.write_bytes(GOOD_ZIP[:500])
    n = len(GOOD_ZIP)
    with pytest.raises(InputDataError, match=rf"short.zip: size mismatch: expected {n} bytes, got 500"):
        download_checkpoint(card, ws, archive=truncated)
    html = tmp_path / "page.zip"
    html.write_bytes(HTML)
    with pytest.raises(InputDataError, match="page.zip: is an HTML page"):
        download_checkpoint(card, ws, archive=html)
    with pytest.raises(UsageError, match="is a directory"):
        download_checkpoint(card, ws, archive=tmp_path)
    with pytest.raises(UsageError, match="not both"):
        download_checkpoint(card, ws, archive=truncated, from_dir=tmp_path)
    assert not ws.checkpoint_dir("real").exists()


def _unpacked(tmp_path, params_name: str = "sshb-0000.params"):
    """A folder holding the test checkpoint's two files, as a user's unpacked archive would."""
    src = tmp_path / "unpacked"
    src.mkdir()
    (src / "sshb-symbol.json").write_bytes(SYMBOL)
    (src / params_name).write_bytes(PARAMS)
    return src


def test_directory_import(tmp_path, ws):
    src = _unpacked(tmp_path)
    card = card_for(GOOD_ZIP)
    ck = download_checkpoint(card, ws, from_dir=src)
    assert_good_checkpoint(ck, ws)
    assert import_checkpoint_files(src, card, ws) == ck
    assert find_checkpoint(card, ws) == ck


@pytest.mark.parametrize("params_name", ["sshb.params", "sshb-0.params", "ssh-0000.params"])
def test_directory_import_wrong_naming(tmp_path, ws, params_name):
    src = _unpacked(tmp_path, params_name)
    with pytest.raises(InputDataError) as ei:
        import_checkpoint_files(src, card_for(GOOD_ZIP), ws)
    msg = str(ei.value)
    assert "\n" not in msg and str(src) in msg
    assert "expected sshb-symbol.json and sshb-0000.params" in msg
    assert msg.endswith(f"found: {', '.join(sorted(['sshb-symbol.json', params_name]))}")
    assert "<prefix>-<epoch:04d>.params" in msg
    assert not ws.checkpoint_dir("real").exists()


def test_directory_import_bad_paths(tmp_path, ws):
    card = card_for(GOOD_ZIP)
    with pytest.raises(InputDataError, match="directory not found"):
        import_checkpoint_files(tmp_path / "missing", card, ws)
    z = tmp_path / "a.zip"
    z.write_bytes(GOOD_ZIP)
    with pytest.raises(UsageError, match="--archive"):
        import_checkpoint_files(z, card, ws)


# ------------------------------------------------------------------------------------------------------------
# The files themselves are checked to be an MXNet checkpoint, without MXNet (issue 7, defect 4)

W = np.random.default_rng(0).standard_normal((25, 4, 16, 16)).astype(np.float32)
B = np.zeros(25, np.float32)
_GOOD_HEAD = len(nd_list({"arg:conv_weight": W})) - len(b"arg:conv_weight") - 16 - W.nbytes  # list + array header


@pytest.mark.parametrize("symbol, params, bad_file, reason", [
    (b'{"nodes": [', PARAMS, "sshb-symbol.json", "not JSON at line 1, column 12"),
    (b"", PARAMS, "sshb-symbol.json", "empty file (0 bytes); expected an MXNet symbol JSON"),
    (b'{"nodes": []}', PARAMS, "sshb-symbol.json", "not an MXNet symbol JSON: no 'arg_nodes' key"),
    (b'[1, 2]', PARAMS, "sshb-symbol.json", "expected an object at the top level, got a list"),
    (SYMBOL, b"", "sshb-0000.params", "empty file (0 bytes); expected an MXNet NDArray list"),
    (SYMBOL, PARAMS[:1000], "sshb-0000.params", "truncated at byte 1000"),
    (SYMBOL, PARAMS[:-3], "sshb-0000.params", f"truncated at byte {len(PARAMS) - 3}"),
    (SYMBOL, b"PK\x03\x04" + PARAMS, "sshb-0000.params", "not an MXNet params file (NDArray list)"),
    (SYMBOL, nd_list({"arg:conv_weight": W}), "sshb-0000.params", "no weights for conv_bias (no 'arg:conv_bias'"),
    (SYMBOL, nd_list({"arg:conv_weight": W[:, :, :3], "arg:conv_bias": B}), "sshb-0000.params",
     "'arg:conv_weight' has shape (25, 4, 3, 16), the symbol sshb-symbol.json implies (25, ?, 16, 16)"),
    (symbol_json(("conv_weight", "conv_bias", "conv4_2_weight")), PARAMS, "sshb-0000.params",
     "no weights for conv4_2_weight"),
])
def test_directory_import_through_the_cli_refuses_a_corrupt_checkpoint(tmp_path, symbol, params, bad_file, reason):
    from typer.testing import CliRunner

    from ssh_toolkit.cli import app

    src = tmp_path / "sshb"
    src.mkdir()
    (src / "sshb-symbol.json").write_bytes(symbol)
    (src / "sshb-0000.params").write_bytes(params)
    ws = tmp_path / "ws"
    r = CliRunner().invoke(app, ["download", "-w", str(ws), "--from-dir", str(src)])
    assert r.exit_code == 2, r.output
    line = r.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(f"ssh-toolkit: error: {src / bad_file}: "), line
    assert reason in line
    assert not (ws / "checkpoints" / "real").exists()
    assert not (ws / "checkpoints").exists() or not any((ws / "checkpoints").iterdir())  # no temporary folder
    assert (src / bad_file).read_bytes() in (symbol, params)  # the user's files are left alone


def test_archive_with_a_corrupt_member_is_refused_naming_archive_and_member(tmp_path, ws):
    bad = make_zip({"ssh-model-final/sshb-symbol.json": SYMBOL,
                    "ssh-model-final/sshb-0000.params": PARAMS[:5000]})
    path = tmp_path / "ssh-model-final.zip"
    path.write_bytes(bad)
    with pytest.raises(InputDataError) as ei:
        download_checkpoint(card_for(bad), ws, archive=path)
    assert str(ei.value) == (f"{path}: member ssh-model-final/sshb-0000.params: truncated at byte 5000: the data "
                             f"of array 0 of 2 (25, 4, 16, 16) float32 needs {W.nbytes} bytes from byte "
                             f"{_GOOD_HEAD}, the file ends {5000 - _GOOD_HEAD} bytes later")
    assert not ws.checkpoint_dir("real").exists()
    assert not list(ws.checkpoint_dir("real").parent.glob("*"))  # no temporary directory either


def test_downloaded_archive_with_invalid_symbol_is_not_unpacked(server, ws):
    bad = make_zip({"sshb-symbol.json": b"<html>not json</html>", "sshb-0000.params": PARAMS})
    server.routes["/a.zip"] = {"data": bad}
    card = card_for(bad, urls=[server.url("/a.zip")])
    with pytest.raises(InputDataError, match=r"ssh-model-final.zip: member sshb-symbol.json: not JSON at line 1, column 1"):
        fetch(card, ws)
    assert not ws.checkpoint_dir("real").exists()


# ------------------------------------------------------------------------------------------------------------
# Unpacked files are not checksum-verified: their parameter count must be the card's (finding 7)


def test_directory_import_of_another_model_is_not_recorded_as_the_real_weights(tmp_path, ws):
    src = _unpacked(tmp_path)
    card = dataclasses.replace(card_for(GOOD_ZIP), reference_params=19_768_420)
    with pytest.raises(InputDataError) as e:
        download_checkpoint(card, ws, from_dir=src)
    assert str(e.value) == (
        f"{src / 'sshb-0000.params'}: holds 25,625 parameters, not the 19,768,420 of ssh-mxnet (reference.params in "
        f"{card.path}): not the real weights (stand-ins are made with 'ssh-toolkit synthesize')")
    assert e.value.exit_code == 2
    assert not ws.checkpoint_dir("real").exists()


def test_an_imported_checkpoint_of_another_parameter_count_is_not_up_to_date(tmp_path, ws):
    src = _unpacked(tmp_path)
    card = card_for(GOOD_ZIP)
    ck = download_checkpoint(card, ws, from_dir=src)
    assert find_checkpoint(card, ws) == ck
    assert find_checkpoint(dataclasses.replace(card, reference_params=19_768_420), ws) is None


def test_the_cli_refuses_a_toy_checkpoint_imported_as_the_real_one(tmp_path, card):
    from typer.testing import CliRunner

    from ssh_toolkit.cli import app
    from ssh_toolkit.standins.toy import synthesize_toy

    toy = synthesize_toy(card, tmp_path / "toy")
    ws = tmp_path / "ws"
    r = CliRunner().invoke(app, ["download", "-w", str(ws), "--from-dir", str(toy.directory)])
    assert r.exit_code == 2, r.output
    assert r.output == (f"ssh-toolkit: error: {toy.directory / 'checkpoint.json'}: these files are the toolkit's toy "
                        f"checkpoint (stand-in weights), not the real weights; use '--weights toy' instead\n")
    bare = tmp_path / "bare"  # the two files alone, without the record that says what they are
    bare.mkdir()
    for p in (toy.symbol_path, toy.params_path):
        shutil.copyfile(p, bare / p.name)
    r = CliRunner().invoke(app, ["download", "-w", str(ws), "--from-dir", str(bare)])
    assert r.exit_code == 2, r.output
    assert r.output == (f"ssh-toolkit: error: {bare / toy.params_path.name}: holds 344,236 parameters, not the 19,768,420 of "
                        f"ssh-mxnet (reference.params in {card.path}): not the real weights (stand-ins are made "
                        f"with 'ssh-toolkit synthesize')\n")
    assert not (ws / "checkpoints" / "real").exists()


def test_a_standin_folder_is_not_imported_as_the_real_weights_though_its_count_matches(tmp_path, card):
    """The standin has the exact architecture (19,768,420 parameters); its checkpoint.json says what it is."""
    from ssh_toolkit.standins.synthesize import synthesize_standin

    standin = synthesize_standin(card, tmp_path / "standin")
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(InputDataError) as e:
        download_checkpoint(card, ws, from_dir=standin.directory)
    assert str(e.value) == (f"{standin.directory / 'checkpoint.json'}: these files are the toolkit's standin "
                            f"checkpoint (stand-in weights), not the real weights; use '--weights standin' instead")
    assert not ws.checkpoint_dir("real").exists()
