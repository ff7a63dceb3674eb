"""The Checkpoint record: a checkpoint is validated before use, so a damaged file is exit 2, not a traceback."""

from __future__ import annotations

import shutil

import pytest
from typer.testing import CliRunner

from ssh_toolkit.cli import app
from ssh_toolkit.errors import InputDataError
from ssh_toolkit.workspace import Checkpoint, Workspace


@pytest.fixture(scope="module")
def toy_ws(tmp_path_factory, card) -> Workspace:
    from ssh_toolkit.standins.toy import synthesize_toy

    ws = Workspace(tmp_path_factory.mktemp("toy-ws"))
    synthesize_toy(card, ws.checkpoint_dir("toy"), seed=0)
    return ws


def _copy(toy_ws: Workspace, tmp_path) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    shutil.copytree(toy_ws.root, ws.root)
    return ws


def test_load_validates_the_files(toy_ws, tmp_path):
    ws = _copy(toy_ws, tmp_path)
    ck = Checkpoint.load(ws.checkpoint_dir("toy"))
    data = ck.params_path.read_bytes()
    ck.params_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError, match=rf"^{ck.params_path}: truncated at byte {len(data) // 2}: the data of"):
        Checkpoint.load(ck.directory)
    assert Checkpoint.load(ck.directory, validate=False) == ck  # the record itself is intact
    ck.params_path.write_bytes(data)
    ck.symbol_path.write_text('{"nodes": [{"op": "null", "name": "data", "inputs": []}]', encoding="utf-8")
    with pytest.raises(InputDataError, match=rf"^{ck.symbol_path}: not JSON at line 1, column 57"):
        Checkpoint.load(ck.directory)


@pytest.mark.parametrize("damage, reason", [
    (lambda ck: ck.symbol_path.write_text("not json at all"), "sshb-symbol.json: not JSON at line 1, column 1"),
    (lambda ck: ck.params_path.write_bytes(b""), "sshb-0000.params: empty file (0 bytes)"),
])
@pytest.mark.parametrize("command", [["evaluate", "--limit", "1"], ["convert"]])
def test_commands_refuse_a_damaged_checkpoint_with_exit_2(toy_ws, tmp_path, sample_root, damage, reason, command):
    ws = _copy(toy_ws, tmp_path)
    damage(Checkpoint.load(ws.checkpoint_dir("toy")))
    args = [*command, "-w", str(ws.root), "--weights", "toy"]
    if command[0] == "evaluate":
        args += ["--data-root", str(sample_root), "--report-dir", str(tmp_path / "run")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1].startswith(f"ssh-toolkit: error: {ws.checkpoint_dir('toy')}/{reason}")
    assert "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


def test_an_empty_workspace_variable_means_the_default_not_the_current_folder(monkeypatch):
    """Review finding 19: SSH_TOOLKIT_WORKSPACE='' put checkpoints and IRs into the current folder."""
    from pathlib import Path

    from ssh_toolkit.workspace import default_root

    monkeypatch.setenv("SSH_TOOLKIT_WORKSPACE", "")
    assert default_root() == Path("workspace")
    monkeypatch.setenv("SSH_TOOLKIT_WORKSPACE", "/data/ws")
    assert default_root() == Path("/data/ws")


# ------------------------------------------------------------ a checkpoint edited after it was recorded (finding 6)


def _edit_a_tensor(ck: Checkpoint) -> None:
    """Add 0.5 to the first weight of the first array, keeping the file a valid checkpoint of the same size."""
    import struct

    from ssh_toolkit.mxnet_format import read_params_index

    info = next(iter(read_params_index(ck.params_path).values()))
    blob = bytearray(ck.params_path.read_bytes())
    (value,) = struct.unpack_from("<f", blob, info.offset)
    struct.pack_into("<f", blob, info.offset, value + 0.5)
    ck.params_path.write_bytes(bytes(blob))


def test_a_params_file_edited_after_it_was_recorded_is_refused(toy_ws, tmp_path):
    ws = _copy(toy_ws, tmp_path)
    ck = Checkpoint.load(ws.checkpoint_dir("toy"))
    _edit_a_tensor(ck)
    with pytest.raises(InputDataError) as e:
        Checkpoint.load(ck.directory)
    assert str(e.value) == (
        f"{ck.params_path}: changed since the checkpoint was recorded (sha256 differs from the params_sha256 of "
        f"{ck.directory / 'checkpoint.json'}); make it again with 'ssh-toolkit synthesize --kind toy --seed 0'")
    assert e.value.exit_code == 2


@pytest.mark.parametrize("command", [["convert"], ["evaluate", "--limit", "1"], ["compare", "--limit", "1"]])
def test_commands_refuse_an_edited_checkpoint_with_exit_2(toy_ws, tmp_path, sample_root, command):
    ws = _copy(toy_ws, tmp_path)
    ck = Checkpoint.load(ws.checkpoint_dir("toy"))
    _edit_a_tensor(ck)
    args = [*command, "-w", str(ws.root), "--weights", "toy", "--report-dir", str(tmp_path / "run")]
    if command[0] == "convert":
        args = args[:-2]
    else:
        args += ["--data-root", str(sample_root)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1].startswith(
        f"ssh-toolkit: error: {ck.params_path}: changed since the checkpoint was recorded"), r.output
    assert not (tmp_path / "run").exists() and not (ws.root / "ir").exists()
