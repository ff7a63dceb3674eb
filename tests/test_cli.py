"""The command line: help, exit codes, one-line errors, and the foundation flow at a small input size."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL
from typer.testing import CliRunner

from ssh_toolkit.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _copy_ws(standin_ws, tmp_path):
    ws, _, _ = standin_ws
    dst = tmp_path / "ws"
    shutil.copytree(ws.root, dst)
    return dst


def test_help_lists_commands_and_exit_codes():
    r = run("--help")
    assert r.exit_code == 0
    for cmd in ("download", "synthesize", "convert", "compare", "evaluate", "make-sample"):
        assert cmd in r.output
    assert "Exit codes: 0 success; 1 regression" in r.output
    for cmd in ("download", "convert", "compare", "evaluate"):
        h = run(cmd, "--help")
        assert h.exit_code == 0 and "--pipeline" in h.output, cmd


@pytest.mark.slow  # the standin workspace fixture runs Model Optimizer
def test_compare_end_to_end_writes_tables_and_passes(standin_ws, tmp_path):
    ws = _copy_ws(standin_ws, tmp_path)
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    import cv2

    for i, (h, w) in enumerate([(200, 300), (150, 120)]):
        cv2.imwrite(str(images / f"im{i}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    out = tmp_path / "report"
    r = run("compare", "-w", ws, "--images", images, "--input-size", SMALL, "--swap-channels",
            "--report-dir", out)
    assert r.exit_code == 0, r.output
    assert r.output.count("PASS |") == 12  # 6 outputs x 2 precisions
    assert "self-check detected (FAIL as expected)" in r.output
    for name in ("parity.csv", "parity.json", "parity_self_check.csv", "report.md", "metadata.json"):
        assert (out / name).is_file(), name
    table = json.loads((out / "parity.json").read_text())
    assert len(table) == 12 and all(row["passed"] for row in table)
    fp32 = [row for row in table if row["precision"] == "FP32"]
    assert max(row["max_abs"] for row in fp32) < 1e-3
    assert json.loads((out / "metadata.json").read_text())["weights"] == "standin"
    assert "STAND-IN WEIGHTS" in (out / "report.md").read_text()


@pytest.mark.slow  # the standin workspace fixture runs Model Optimizer
def test_compare_fails_with_exit_1_naming_outputs_when_tolerance_is_exceeded(standin_ws, tmp_path, card):
    import yaml

    ws = _copy_ws(standin_ws, tmp_path)
    data = yaml.safe_load(card.path.read_text())
    data["tolerances"]["FP32"] = {"default": {"atol": 1e-9, "rtol": 0.0, "min_cosine": 0.5}}
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(data))
    images = tmp_path / "imgs"
    images.mkdir()
    import cv2

    cv2.imwrite(str(images / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    r = run("compare", "-w", ws, "-p", strict, "--images", images, "--input-size", SMALL, "--precision", "FP32",
            "--report-dir", tmp_path / "rep")
    assert r.exit_code == 1
    assert "ssh-toolkit: error: parity failed for ir-fp32: rpn_cls_prob_reshape_stride32" in r.output
    assert "FAIL | rpn_bbox_pred_stride8" in r.output


@pytest.mark.slow  # the standin workspace fixture runs Model Optimizer
def test_missing_image_folder_and_corrupt_image(standin_ws, tmp_path):
    ws = _copy_ws(standin_ws, tmp_path)
    r = run("compare", "-w", ws, "--images", tmp_path / "nope", "--input-size", SMALL, "--report-dir",
            tmp_path / "rep")
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == f"ssh-toolkit: error: {tmp_path / 'nope'}: image folder not found"
    images = tmp_path / "imgs"
    images.mkdir()
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = run("compare", "-w", ws, "--images", images, "--input-size", SMALL, "--report-dir", tmp_path / "rep")
    assert r.exit_code == 2
    assert f"{images / 'broken.jpg'}: cannot decode image (corrupt or not an image)" in r.output
    assert not (tmp_path / "rep").exists()


def test_convert_without_checkpoint_and_bad_options(tmp_path):
    r = run("convert", "-w", tmp_path)
    assert r.exit_code == 2 and "no checkpoint; run 'ssh-toolkit download'" in r.output
    r = run("convert", "-w", tmp_path, "--weights", "toy")
    assert r.exit_code == 2 and "run 'ssh-toolkit synthesize --kind toy' first" in r.output
    r = run("convert", "-w", tmp_path, "--weights", "bogus")
    assert r.exit_code == 2 and "'bogus' is not one of 'auto', 'real', 'standin', 'toy'" in r.output
    r = run("synthesize", "-w", tmp_path, "--kind", "nope")
    assert r.exit_code == 2 and "'nope' is not one of 'standin', 'toy'" in r.output
    r = run("convert", "-w", tmp_path, "--weights", "toy", "--precision", "fp64")
    assert r.exit_code == 2 and "'fp64' is not one of 'fp32', 'fp16'" in r.output
    r = run("evaluate", "-w", tmp_path, "--model", "ir-fp64")
    assert r.exit_code == 2 and "'ir-fp64' is not one of 'mxnet', 'ir-fp32', 'ir-fp32@bf16', 'ir-fp32@f16', 'ir-fp16'" in r.output
    r = run("convert", "-w", tmp_path, "--weights", "toy", "--precision", "fp16")  # any case: parsed, then
    assert r.exit_code == 2 and "run 'ssh-toolkit synthesize --kind toy' first" in r.output  # no checkpoint
    assert not (tmp_path / "checkpoints").exists()


def test_missing_dependency_is_an_environment_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mxnet", None)  # as if mxnet were not installed
    r = run("synthesize", "-w", tmp_path)
    assert r.exit_code == 3
    assert r.output.startswith("ssh-toolkit: error: missing dependency 'mxnet'")
    assert not (tmp_path / "checkpoints").exists()


def test_bad_pipeline_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "card.yaml"
    bad.write_text("name: x\n")
    r = run("convert", "-w", tmp_path, "-p", bad)
    assert r.exit_code == 2
    assert r.output.strip() == f"ssh-toolkit: error: {bad}: key 'reference': missing"


def test_download_offline_explains_the_dead_link_and_how_to_supply_the_archive(tmp_path):
    r = run("download", "-w", tmp_path, "--retries", "0", "--mirror", "http://127.0.0.1:9/ssh-model-final.zip")
    assert r.exit_code == 2
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("ssh-toolkit: error:") and "dead" in last and "--archive" in last
    assert not (tmp_path / "checkpoints" / "real").exists()


@pytest.mark.slow
def test_full_size_synthesize_convert_compare(tmp_path, sample_root):
    """Acceptance: synthesize -> convert -> compare at the full 640 input; FP32 max |diff| < 1e-3."""
    ws = tmp_path / "ws"
    assert run("synthesize", "-w", ws).exit_code == 0
    r = run("convert", "-w", ws)
    assert r.exit_code == 0, r.output
    out = tmp_path / "rep"
    r = run("compare", "-w", ws, "--data-root", sample_root, "--limit", 1, "--report-dir", out)
    assert r.exit_code == 0, r.output
    table = json.loads((out / "parity.json").read_text())
    assert {row["shape"] for row in table} >= {"1x4x20x20", "1x8x80x80"}
    assert all(row["max_abs"] < 1e-3 for row in table if row["precision"] == "FP32")
    assert all(row["passed"] for row in table)


def _card_for_archive(card, tmp_path, archive):
    import hashlib

    import yaml

    data = yaml.safe_load(card.path.read_text())
    data["checkpoint"]["size"] = archive.stat().st_size
    data["checkpoint"]["sha256"] = hashlib.sha256(archive.read_bytes()).hexdigest()
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_download_archive_through_the_cli(card, tmp_path):
    import zipfile

    from mxnet_files import nd_list, symbol_json

    params = nd_list({"arg:conv_weight": np.zeros((25, 3, 16, 16), np.float32), "arg:conv_bias": np.zeros(25, np.float32)})
    archive = tmp_path / "ssh-model-final.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("model/sshb-symbol.json", symbol_json())
        z.writestr("model/sshb-0000.params", params)
    pipeline = _card_for_archive(card, tmp_path, archive)
    ws = tmp_path / "ws"
    r = run("download", "-w", ws, "-p", pipeline, "--archive", archive)
    assert r.exit_code == 0, r.output
    assert "archive sha256 verified" in r.output
    assert (ws / "checkpoints" / "real" / "sshb-0000.params").read_bytes() == params
    r = run("download", "-w", ws, "-p", pipeline)
    assert r.exit_code == 0 and r.output.startswith("checkpoint up to date:")

    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("sshb-symbol.json", "{ }")
        z.writestr("sshb-0000.params", b"\x01" * 64)
    ws2 = tmp_path / "ws2"
    r = run("download", "-w", ws2, "-p", pipeline, "--archive", other)
    assert r.exit_code == 2
    line = r.output.strip()
    assert line.startswith("ssh-toolkit: error:") and "\n" not in line
    assert str(other) in line and card.checkpoint.sha256 not in line  # the test card's digest, not the real one
    assert not (ws2 / "checkpoints" / "real").exists()


def _options(command: str) -> dict[str, object]:
    """The Click parameters of one command, by option name (``--limit``)."""
    import typer.main

    cmd = typer.main.get_command(app).commands[command]
    return {o: p for p in cmd.params for o in p.opts}


def test_help_lists_the_allowed_values():
    expected = {
        ("convert", "--weights"): "--weights <auto|real|standin|toy>",
        ("compare", "--weights"): "--weights <auto|real|standin|toy>",
        ("evaluate", "--weights"): "--weights <auto|real|standin|toy>",
        ("run", "--weights"): "--weights <real|standin|toy>",
        ("synthesize", "--kind"): "--kind <standin|toy>",
        ("evaluate", "--model"): "--model mxnet|ir-fp32|ir-fp32@bf16|ir-fp32@f16|ir-fp16|ir-fp16@bf16|ir-fp16@f16",
        ("evaluate", "--exec-precision"): "--exec-precision f32|bf16|default",
        ("run", "--exec-precision"): "--exec-precision f32|bf16|default",
        ("convert", "--precision"): "--precision FP32|FP16",
        ("compare", "--precision"): "--precision FP32|FP16",
    }
    for (command, option), text in expected.items():
        h = run(command, "--help")
        assert h.exit_code == 0 and text in h.output, (command, option, h.output)
        line = next(x for x in h.output.splitlines() if x.strip().startswith(option))
        assert "list[" not in line and "<str>" not in line and "TEXT" not in line, line


def test_limit_reads_the_same_on_compare_evaluate_and_run():
    limits = {c: _options(c)["--limit"] for c in ("compare", "evaluate", "run")}
    assert {p.help for p in limits.values()} == {"Use only the first N images."}
    assert {(p.type_descriptor.annotation, p.min, p.max, p.metavar) for p in limits.values()} == {(int, 1, None, "N")}
    for command in limits:
        r = run(command, "--limit", "0")
        assert r.exit_code == 2 and "'--limit': Input should be greater than or equal to 1" in r.output, (command, r.output)


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_retries_means_retries_after_the_first_attempt(tmp_path):
    assert "each source gets 1 + N attempts" in " ".join(run("download", "--help").output.split())
    r = run("download", "-w", tmp_path, "--retries", "1", "--mirror", "http://127.0.0.1:9/ssh-model-final.zip")
    assert r.exit_code == 2
    assert "http://127.0.0.1:9/ssh-model-final.zip: connection refused (2 attempts)" in r.output
    assert run("download", "-w", tmp_path, "--retries", "-1").exit_code == 2


def test_readme_says_which_commands_take_pipeline_and_workspace():
    import typer.main

    commands = typer.main.get_command(app).commands
    without = {opt: sorted(c for c in commands if opt not in _options(c)) for opt in ("--pipeline", "--workspace")}
    assert without == {"--pipeline": ["doctor", "make-sample", "report"], "--workspace": ["gate", "merge", "report"]}
    text = " ".join(README.read_text().split())
    assert ("`--pipeline/-p FILE` (every command but `doctor`, `make-sample` and `report`; default: the embedded "
            "`ssh_toolkit/pipelines/ssh-mxnet.yaml`)") in text
    assert ("`--workspace/-w DIR` (every command but `gate`, `merge` and `report`; default: `$SSH_TOOLKIT_WORKSPACE` "
            "or `./workspace`") in text


_BAR = re.compile(r"^[\w -]+: +\d+%\|")  # a tqdm bar: "infer mxnet:  50%|#####     | 1/2 [...]"


def _cli(*args, cwd, env=None) -> subprocess.CompletedProcess:
    """The real command line in a new process (what a user's terminal shows, minus the tty)."""
    return subprocess.run([sys.executable, "-m", "ssh_toolkit.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_real_cli_run_prints_absolute_paths_no_mkldnn_banner_and_no_message_after_a_bar(standin_ws, sample_root,
                                                                                           tmp_path):
    ws, _, _ = standin_ws
    shutil.copytree(ws.root, tmp_path / "ws", ignore=shutil.ignore_patterns("cache"))  # MXNet must run
    env = {k: v for k, v in os.environ.items() if k != "MXNET_SUBGRAPH_VERBOSE"}
    args = ("evaluate", "-w", "ws", "--weights", "standin", "--data-root", sample_root, "--limit", 2,
            "--input-size", SMALL)
    r = _cli(*args, "--report-dir", "run", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    out = r.stdout + r.stderr
    assert "Subgraph backend" not in out and "MKLDNN" not in out
    assert f"summary: {tmp_path / 'run' / 'summary.json'}\n" in r.stdout
    assert f"report: {tmp_path / 'run' / 'report.md'}\n" in r.stdout
    assert (tmp_path / "run" / "summary.json").is_file()
    assert f"checkpoint: standin (stand-in weights) in {tmp_path / 'ws' / 'checkpoints' / 'standin'}" in r.stderr
    bars = 0
    for line in r.stderr.split("\n"):  # a bar redraws itself after \r; a message after it would share its line
        pieces = [p for p in line.split("\r") if p.strip()]
        if any(_BAR.match(p) for p in pieces):
            bars += 1
            assert _BAR.match(pieces[-1]), f"message on a progress bar's line: {line!r}"
    assert bars >= 3  # mxnet, ir-fp32, ir-fp16
    # The control: MXNet does print the banner when asked to (so the check above can see it).
    shutil.rmtree(tmp_path / "ws" / "cache")
    r = _cli(*args, "--model", "mxnet", "--report-dir", "run2", cwd=tmp_path,
             env={**env, "MXNET_SUBGRAPH_VERBOSE": "1"})
    assert r.returncode == 0 and "Subgraph backend MKLDNN is activated" in r.stderr
# ------------------------------------------------------------ report folders, concurrent runs, OS errors, Ctrl-C
# One toy workspace (synthesize --kind toy, convert FP32 only to save a Model Optimizer start, make-sample, at
# the SMALL input size) for the tests below; each test copies it or leaves it unchanged.


@pytest.fixture(scope="module")
def toy_ws(tmp_path_factory):
    ws = tmp_path_factory.mktemp("toy") / "ws"
    for args in (("synthesize", "--kind", "toy"), ("convert", "--weights", "toy", "--precision", "FP32", "--input-size", SMALL),
                 ("make-sample",)):
        r = run(*args, "-w", ws)
        assert r.exit_code == 0, r.output
    return ws


def _evaluate_cmd(ws, *extra):
    import sys

    return [sys.executable, "-m", "ssh_toolkit.cli", "evaluate", "-w", str(ws), "--weights", "toy", "--limit", "2",
            "--input-size", str(SMALL), "--exec-precision", "f32", *map(str, extra)]


def _one_error_line(output: str) -> str:
    """The output's only error line; no traceback anywhere."""
    assert "Traceback" not in output and "Exception ignored" not in output, output
    errors = [ln for ln in output.splitlines() if "ssh-toolkit: error:" in ln or "ssh-toolkit: interrupted" in ln]
    assert len(errors) == 1, output
    return errors[0][errors[0].index("ssh-toolkit:"):]  # (a progress bar may still precede it on its line)


def _assert_complete_run(folder):
    from ssh_toolkit.fileio import MARKER

    marker = json.loads((folder / MARKER).read_text())
    assert marker["state"] == "complete"
    assert {"summary.json", "report.md", "metrics.csv", "per_image.csv"} <= set(marker["files"])
    for name, size in marker["files"].items():
        assert (folder / name).stat().st_size == size, name
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["run_id"] == folder.name and summary["n_images"] == 2
    assert set(summary["map"]) == {"mxnet", "ir-fp32"}


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_report_dir_holding_a_summary_and_user_notes_is_refused_and_kept(toy_ws, tmp_path):
    """Acceptance (defect 1): mkdir d; echo x > d/notes.txt; echo '{}' > d/summary.json; evaluate --report-dir d
    exits 2 and d/notes.txt is still there."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("x\n")
    (d / "summary.json").write_text("{}\n")
    r = run("evaluate", "-w", toy_ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--report-dir", d,
            "--exec-precision", "f32")
    assert r.exit_code == 2, r.output
    assert _one_error_line(r.output) == (f"ssh-toolkit: error: {d}: exists and was not written by ssh-toolkit (no "
                                         f".ssh-toolkit.json); it holds notes.txt, summary.json; choose another "
                                         f"folder or remove it")
    assert (d / "notes.txt").read_text() == "x\n" and (d / "summary.json").read_text() == "{}\n"
    assert sorted(p.name for p in d.iterdir()) == ["notes.txt", "summary.json"]


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_a_run_folder_with_the_users_notes_is_not_replaced(toy_ws, tmp_path):
    out = tmp_path / "run"
    args = ("evaluate", "-w", toy_ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--report-dir", out,
            "--exec-precision", "f32")
    assert run(*args).exit_code == 0
    assert run(*args).exit_code == 0  # the toolkit's own run folder is replaced
    _assert_complete_run(out)
    (out / "my-notes.md").write_text("looks good")
    r = run(*args)
    assert r.exit_code == 2
    assert _one_error_line(r.output) == (f"ssh-toolkit: error: {out}: holds files ssh-toolkit did not write: "
                                         f"my-notes.md; move them away or choose another folder (nothing was "
                                         f"deleted)")
    assert (out / "my-notes.md").read_text() == "looks good"
    _assert_complete_run(out)



@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_a_report_dir_of_another_kind_of_toolkit_folder_is_refused_and_kept(toy_ws, tmp_path):
    """Review finding 1: --report-dir pointed at the checkpoint, an IR or the dataset being read deleted it (exit 0);
    make-sample --out a run folder replaced the run."""
    ws = tmp_path / "ws"
    shutil.copytree(toy_ws, ws, ignore=shutil.ignore_patterns("cache"))
    before = {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()}
    for target, what in ((ws / "checkpoints" / "toy", "checkpoint folder"),
                         (ws / "ir" / f"toy-{SMALL}" / "FP32", "IR folder"),
                         (ws / "data" / "wider-sample", "dataset folder")):
        r = run("evaluate", "-w", ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--model", "mxnet",
                "--report-dir", target)
        assert r.exit_code == 2, r.output
        assert _one_error_line(r.output) == (f"ssh-toolkit: error: {target}: is a {what} written by ssh-toolkit, "
                                             f"not a run folder (evaluate); not replaced: choose another folder")
    assert {p: p.read_bytes() for p in ws.rglob("*") if p.is_file()} == before

    out = tmp_path / "run"
    assert run("evaluate", "-w", ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--model", "mxnet",
               "--report-dir", out).exit_code == 0
    r = run("make-sample", "-w", ws, "--out", out)
    assert r.exit_code == 2, r.output
    assert _one_error_line(r.output) == (f"ssh-toolkit: error: {out}: is a run folder (evaluate) written by "
                                         f"ssh-toolkit, not a dataset folder; not replaced: choose another folder")
    assert (out / "summary.json").is_file() and not (out / "wider_face_split").exists()


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_compare_refuses_a_foreign_report_folder_before_any_work(toy_ws, tmp_path, sample_root):
    d = tmp_path / "d"
    d.mkdir()
    (d / "report.md").write_text("my report")
    r = run("compare", "-w", toy_ws, "--weights", "toy", "--data-root", sample_root, "--input-size", SMALL,
            "--precision", "FP32", "--report-dir", d)
    assert r.exit_code == 2
    assert "was not written by ssh-toolkit" in _one_error_line(r.output)
    assert (d / "report.md").read_text() == "my report"


@pytest.mark.slow
def test_two_evaluations_started_together_write_two_complete_run_folders(toy_ws, tmp_path):
    """Acceptance (defect 2): two `evaluate --weights toy --limit 2` started together (default run folders,
    same cache entries written by both) give two distinct complete run folders."""
    import shutil
    import subprocess

    ws = tmp_path / "ws"
    shutil.copytree(toy_ws, ws, ignore=shutil.ignore_patterns("cache"))  # both processes infer and cache
    procs = [subprocess.Popen(_evaluate_cmd(ws), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        assert "(2 images, 2 inferred)" in out or "(2 images, from cache)" in out
    runs = sorted((tmp_path / "reports" / "runs").iterdir())
    assert len(runs) == 2, runs
    for folder in runs:
        _assert_complete_run(folder)
    assert {o.strip().splitlines()[-1] for o, _ in outputs} == {f"report: {r.resolve() / 'report.md'}" for r in runs}
    assert len(list((ws / "cache" / "raw").rglob("*.npz"))) == 4  # 2 models x 2 images, whole entries
    assert not [p for p in (ws / "cache").rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_a_failed_evaluation_leaves_no_reserved_run_folder(toy_ws, tmp_path):
    import subprocess

    r = subprocess.run(_evaluate_cmd(toy_ws, "--data-root", tmp_path / "missing"), cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert "missing" in _one_error_line(r.stderr)
    runs = tmp_path / "reports" / "runs"
    assert (list(runs.iterdir()) if runs.exists() else []) == []


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_report_folder_under_a_file_is_one_line_exit_3(toy_ws, tmp_path):
    """Defect 3: an unwritable report folder gave a traceback and exit 1 (1 means regression)."""
    (tmp_path / "some_file").write_text("x")
    target = tmp_path / "some_file" / "run"
    r = run("evaluate", "-w", toy_ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--report-dir", target)
    assert r.exit_code == 3, r.output
    line = _one_error_line(r.output)
    assert line == f"ssh-toolkit: error: {tmp_path / 'some_file'}: Not a directory"
    assert "infer" not in r.output  # refused before any inference
    assert (tmp_path / "some_file").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["some_file"]


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_unwritable_cache_is_one_line_exit_3_naming_it(toy_ws, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(toy_ws, ws, ignore=shutil.ignore_patterns("cache"))
    (ws / "cache").write_text("not a folder")  # as unwritable as it gets for root, who ignores permissions
    r = run("evaluate", "-w", ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--report-dir",
            tmp_path / "run")
    assert r.exit_code == 3, r.output
    line = _one_error_line(r.output)
    assert line == f"ssh-toolkit: error: {ws / 'cache'}: Not a directory"
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_disk_full_while_caching_is_one_line_exit_3_and_leaves_nothing_partial(toy_ws, tmp_path, monkeypatch):
    import errno
    import os
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(toy_ws, ws, ignore=shutil.ignore_patterns("cache"))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # what write() says on a full disk

    monkeypatch.setattr(np.lib.format, "write_array", full)
    r = run("evaluate", "-w", ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--report-dir",
            tmp_path / "run")
    assert r.exit_code == 3, r.output
    line = _one_error_line(r.output)
    assert line.startswith(f"ssh-toolkit: error: {ws / 'cache' / 'raw'}")
    assert line.endswith(".npz: No space left on device")
    assert [p for p in (ws / "cache").rglob("*") if p.is_file()] == []
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_disk_full_while_writing_the_run_folder_keeps_nothing_partial(toy_ws, tmp_path, monkeypatch):
    import errno
    import os

    from ssh_toolkit import fileio

    real_replace = os.replace

    def full(src, dst):
        if "report.md" in str(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", full)
    out = tmp_path / "reports" / "run"
    r = run("evaluate", "-w", toy_ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--report-dir", out)
    assert r.exit_code == 3, r.output
    assert _one_error_line(r.output) == f"ssh-toolkit: error: {out / 'report.md'}: No space left on device"
    assert list((tmp_path / "reports").iterdir()) == []


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_ctrl_c_while_a_cache_entry_is_written_prints_one_line(toy_ws, tmp_path):
    """Defect 12: Ctrl-C inside the cache write printed 'seek of closed file' under the exit-130 message."""
    import shutil
    import subprocess
    import sys

    ws = tmp_path / "ws"
    shutil.copytree(toy_ws, ws, ignore=shutil.ignore_patterns("cache"))
    code = ("import sys\nimport numpy.lib.format as fmt\nreal = fmt.write_array\ncalls = [0]\n"
            "def write_array(*a, **k):\n    calls[0] += 1\n"
            "    if calls[0] == 10:  # inside the second entry (8 arrays each): as if Ctrl-C arrived mid-write\n"
            "        raise KeyboardInterrupt\n    return real(*a, **k)\n"
            "fmt.write_array = write_array\nfrom ssh_toolkit.cli import main\n"
            f"sys.argv = ['ssh-toolkit', *{_evaluate_cmd(ws)[3:]!r}]\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 130, r.stderr
    assert _one_error_line(r.stderr) == ("ssh-toolkit: interrupted; finished work is kept, run the same command "
                                         "again to resume")
    assert "seek of closed file" not in r.stderr
    entries = [p for p in (ws / "cache").rglob("*") if p.is_file()]
    assert len(entries) == 1 and entries[0].suffix == ".npz"  # the first entry whole, no partial second one
    runs = tmp_path / "reports" / "runs"
    assert (list(runs.iterdir()) if runs.exists() else []) == []  # the reserved run folder was released


def test_run_and_download_refuse_a_foreign_destination_before_any_work(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    r = run("run", "-w", tmp_path / "ws", "--report-dir", d)
    assert r.exit_code == 2
    assert "d: exists and was not written by ssh-toolkit" in _one_error_line(r.output)
    assert not (tmp_path / "ws").exists()  # no checkpoint made, nothing converted

    real = tmp_path / "ws" / "checkpoints" / "real"
    real.mkdir(parents=True)
    (real / "my-weights.params").write_text("mine")
    r = run("download", "-w", tmp_path / "ws", "--retries", "0", "--mirror", "http://127.0.0.1:9/ssh-model-final.zip")
    assert r.exit_code == 2
    assert _one_error_line(r.output).startswith(f"ssh-toolkit: error: {real}: exists and was not written by")
    assert (real / "my-weights.params").read_text() == "mine" and not (tmp_path / "ws" / "downloads").exists()


def test_convert_hints_name_the_checkpoint(tmp_path, sample_root):
    """Finding 18: the convert hints of evaluate and compare omitted --weights (a workspace may hold several)."""
    from ssh_toolkit.card import load_card
    from ssh_toolkit.standins.toy import synthesize_toy
    from ssh_toolkit.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    synthesize_toy(load_card(), ws.checkpoint_dir("toy"), seed=0)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("x")  # refused before any inference: the hint is printed first
    r = run("evaluate", "-w", ws.root, "--weights", "toy", "--input-size", SMALL, "--data-root", sample_root,
            "--report-dir", foreign)
    assert r.exit_code == 2, r.output
    assert ("not evaluated: ir-fp32, ir-fp16 (not converted at input size 128; run 'ssh-toolkit convert --weights "
            "toy --input-size 128 --precision FP32 --precision FP16')") in r.output
    r = run("compare", "-w", ws.root, "--weights", "toy", "--input-size", SMALL, "--data-root", sample_root)
    assert r.exit_code == 2, r.output
    assert _one_error_line(r.output) == (
        f"ssh-toolkit: error: {ws.ir_dir('toy', SMALL, 'FP32')}: not converted; run 'ssh-toolkit convert --weights "
        f"toy --input-size 128 --precision FP32' (or the same with --route native) first")


def test_help_shows_no_python_types_and_the_real_defaults():
    """Finding 20: --subset, --mirror and report's RUN_DIR showed <list[str]>/<list[Path]>; run/gate --baseline
    named reports/baselines/ (the default is <card dir>/../baselines); report's comparison path was wrong."""
    commands = [c.name or c.callback.__name__.replace("_cmd", "").replace("_", "-")
                for c in app.registered_commands]
    assert {"evaluate", "download", "report", "run", "gate"} <= set(commands)
    for cmd in commands:
        h = run(cmd, "--help")
        assert h.exit_code == 0, cmd
        assert "list[" not in h.output and "<Path>" not in h.output, (cmd, h.output)
        assert "reports/baselines" not in h.output, (cmd, h.output)
    def squeezed(text):  # help wraps lines anywhere, inside <...> too
        return "".join(text.split())

    assert squeezed("<folder of the first run>/compare-<A>-vs-<B>.html") in squeezed(run("report", "--help").output)
    assert squeezed("<card dir>/../baselines/<name>-<weights>-<size>.json") in squeezed(run("run", "--help").output)


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_synthesize_toy_does_not_claim_a_seed_it_ignores(tmp_path):
    r = run("synthesize", "--kind", "toy", "--seed", "7", "-w", tmp_path / "ws")
    assert r.exit_code == 0, r.output
    assert "seed 7" not in r.output and "toy checkpoint (stand-in weights, fixed: --seed has no effect)" in r.output
    r = run("synthesize", "--kind", "standin", "--seed", "7", "-w", tmp_path / "ws")
    assert r.exit_code == 0, r.output
    assert "standin checkpoint (stand-in weights, seed 7)" in r.output


def test_the_missing_baseline_hint_never_writes_into_an_installed_package(tmp_path, monkeypatch):
    """Finding 20: with the embedded card of an installed package, run's hint said to record the baseline into
    site-packages/ssh_toolkit/baselines/."""
    from ssh_toolkit import cli

    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "reports" / "runs" / "r1"
    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "ssh_toolkit"
    baseline = installed / "baselines" / "ssh-mxnet-toy-640.json"
    hint = cli._missing_baseline_hint(baseline, run_dir, package_dir=installed)
    assert hint == (f"gate: no baseline at {baseline}; record one with 'ssh-toolkit gate {run_dir} --baseline "
                    f"{tmp_path / 'baselines' / 'ssh-mxnet-toy-640.json'} --update-baseline', then pass it with "
                    f"'ssh-toolkit run --baseline {tmp_path / 'baselines' / 'ssh-mxnet-toy-640.json'}'")
    clone = tmp_path / "clone" / "ssh_toolkit"  # an editable install: the package's baselines are the committed ones
    baseline = clone / "baselines" / "ssh-mxnet-toy-640.json"
    assert cli._missing_baseline_hint(baseline, run_dir, package_dir=clone) == (
        f"gate: no baseline at {baseline}; record one with 'ssh-toolkit gate {run_dir} --baseline {baseline} "
        f"--update-baseline'")


def test_gate_update_baseline_refuses_to_overwrite_a_file_that_is_not_a_baseline(tmp_path):
    """Review finding 2: `gate RUN --update-baseline --baseline /tmp/precious.txt` overwrote the file, exit 0."""
    from gate.records import make_summary

    run_dir = tmp_path / "runs" / "r1"
    make_summary(run_id="r1").save(run_dir)
    precious = tmp_path / "precious.txt"
    precious.write_text("do not lose me\n")
    r = run("gate", run_dir, "--baseline", precious, "--update-baseline")
    assert r.exit_code == 2, r.output
    assert _one_error_line(r.output).startswith(f"ssh-toolkit: error: {precious}: exists and is not a baseline "
                                                f"ssh-toolkit can read (not a valid baseline: not JSON")
    assert precious.read_text() == "do not lose me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt", "runs"]


def test_report_out_refuses_a_users_file_and_a_folder_with_exit_2(tmp_path):
    """Review finding 3: `report RUN --out /tmp/notes.html` overwrote the file; --out a folder was exit 3."""
    from gate.records import make_summary

    run_dir = tmp_path / "runs" / "r1"
    make_summary(run_id="r1").save(run_dir)
    notes = tmp_path / "notes.html"
    notes.write_text("mine")
    r = run("report", run_dir, "--out", notes)
    assert r.exit_code == 2, r.output
    assert _one_error_line(r.output) == (f"ssh-toolkit: error: {notes}: exists and is not a report written by "
                                         f"ssh-toolkit; not overwritten: choose another --out file or move it away")
    assert notes.read_text() == "mine"
    r = run("report", run_dir, "--out", tmp_path / "runs")
    assert r.exit_code == 2, r.output
    assert _one_error_line(r.output) == (f"ssh-toolkit: error: {tmp_path / 'runs'}: is a folder; --out expects the "
                                         f"path of an HTML file")
    assert run("report", run_dir, "--out", tmp_path / "r.html").exit_code == 0
    assert run("report", run_dir, "--out", tmp_path / "r.html").exit_code == 0  # its own page: replaced


def test_an_empty_workspace_option_is_a_usage_error(tmp_path, monkeypatch):
    """Review finding 19: `-w ''` (e.g. an unset shell variable) used the current folder as the workspace."""
    monkeypatch.chdir(tmp_path)
    for args in (("synthesize", "--kind", "toy", "-w", ""), ("make-sample", "--workspace", "")):
        r = run(*args)
        assert r.exit_code == 2, r.output
        assert "Invalid value for '--workspace' / '-w': empty path; give a folder" in " ".join(r.output.split())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_a_file_in_place_of_the_runs_folder_is_one_line_exit_3_named_absolutely(toy_ws, tmp_path, monkeypatch):
    """Review finding 19: a file at reports/runs gave 'reports/runs: File exists' (relative, unclear)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "runs").write_text("x")
    r = run("evaluate", "-w", toy_ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL, "--model", "mxnet")
    assert r.exit_code == 3, r.output
    assert _one_error_line(r.output) == f"ssh-toolkit: error: {tmp_path / 'reports' / 'runs'}: Not a directory"


@pytest.mark.parametrize("args, option", [
    (("evaluate", "--jobs", "-1"), "--jobs"),
    (("make-sample", "--seed", "-5"), "--seed"),
    (("synthesize", "--kind", "standin", "--seed", "-1"), "--seed"),
    (("synthesize", "--kind", "toy", "--seed", "-1"), "--seed"),
])
def test_negative_counts_and_seeds_are_refused_up_front(tmp_path, args, option):
    ws = tmp_path / "ws"
    r = run(*args, "-w", ws)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert f"Invalid value for '{option}'" in r.output and "greater than or equal to 0" in r.output, r.output
    assert not ws.exists()  # refused before any work


def test_evaluate_exits_1_when_a_parity_verdict_fails_and_keeps_the_run_folder(toy_ws, tmp_path, card):
    """README's exit table: 1 when a parity tolerance failed; evaluate agrees with compare (finding 6)."""
    import yaml

    data = yaml.safe_load(card.path.read_text())
    data["tolerances"]["FP32"] = {"default": {"atol": 1e-12, "rtol": 0.0, "min_cosine": 0.5}}
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump(data))
    out = tmp_path / "run"
    r = run("evaluate", "-w", toy_ws, "-p", strict, "--weights", "toy", "--limit", 2, "--input-size", SMALL,
            "--exec-precision", "f32", "--report-dir", out)
    assert r.exit_code == 1, r.output
    assert re.search(r"^parity\[ir-fp32\]: FAIL rpn_cls_prob_reshape_stride32: ", r.output, re.M), r.output
    assert f"summary: {(out / 'summary.json').resolve()}" in r.output
    summary = json.loads((out / "summary.json").read_text())
    failed = [o for o, s in summary["parity"]["ir-fp32"].items() if not s["passed"]]
    assert failed
    assert _one_error_line(r.output) == (f"ssh-toolkit: error: parity failed for ir-fp32: {', '.join(failed)} "
                                         f"(see {(out / 'summary.json').resolve()})")
    _assert_complete_run(out)  # the run folder is written and kept

    r = run("evaluate", "-w", toy_ws, "--weights", "toy", "--limit", 2, "--input-size", SMALL,
            "--exec-precision", "f32", "--report-dir", tmp_path / "ok")
    assert r.exit_code == 0 and "parity[ir-fp32]: PASS" in r.output, r.output


def test_evaluate_help_and_readme_say_exit_1_on_a_failed_parity_verdict():
    h = run("evaluate", "--help")
    assert "Exit 1 when an IR's numeric parity verdict fails" in " ".join(h.output.split())
    table = README.read_text(encoding="utf-8").split("### Exit codes", 1)[1]
    row = next(ln for ln in table.splitlines() if ln.startswith("| 1 |"))
    assert "a parity verdict failed (`compare`, `evaluate`, `run`;" in row


# ------------------------------------------- a write that fails inside MXNet or OpenCV (finding 12: a full disk)


@pytest.fixture()
def file_size_limit():
    """Lower this process's file size limit (RLIMIT_FSIZE) for the block: a write past it fails, as on a full
    disk, in Python (EFBIG) and inside MXNet's or OpenCV's own C writers alike."""
    import contextlib
    import resource
    import signal

    @contextlib.contextmanager
    def limit(nbytes: int):
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, old)
    return limit


def test_synthesize_failing_to_write_the_params_is_one_line_exit_3_naming_it(tmp_path, file_size_limit):
    ws = tmp_path / "ws"
    with file_size_limit(200_000):  # the toy params are 1.4 MB
        r = run("synthesize", "--kind", "toy", "-w", ws)
    assert r.exit_code == 3, r.output
    assert _one_error_line(r.output) == (f"ssh-toolkit: error: {ws / 'checkpoints' / 'toy' / 'sshb-0000.params'}: "
                                         f"write failed (MXNet: FileStream.Write incomplete)")
    assert not (ws / "checkpoints" / "toy").exists() and list((ws / "checkpoints").iterdir()) == []


def test_synthesize_on_a_full_disk_says_so(tmp_path, file_size_limit, monkeypatch):
    import shutil as sh
    from collections import namedtuple

    from ssh_toolkit import fileio

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda p: usage(1 << 20, 1 << 20, 0) if "ws" in str(p)
                        else sh.disk_usage(p))
    ws = tmp_path / "ws"
    with file_size_limit(200_000):
        r = run("synthesize", "--kind", "toy", "-w", ws)
    assert r.exit_code == 3, r.output
    assert _one_error_line(r.output) == (f"ssh-toolkit: error: {ws / 'checkpoints' / 'toy' / 'sshb-0000.params'}: "
                                         f"No space left on device")


def test_make_sample_failing_to_write_an_image_is_one_line_exit_3_naming_it(tmp_path, file_size_limit):
    out = tmp_path / "sample"
    with file_size_limit(30_000):  # the images are about 80 KB
        r = run("make-sample", "--out", out)
    assert r.exit_code == 3, r.output
    line = _one_error_line(r.output)
    assert line.startswith(f"ssh-toolkit: error: {out / 'WIDER_val' / 'images'}/") and \
        line.endswith("_sample_1.jpg: File too large"), line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_gate_prints_the_localize_hint_of_a_failed_parity_rule_after_its_verdict(card, capsys, monkeypatch):
    from gate.records import _parity, make_summary

    from ssh_toolkit import cli
    from ssh_toolkit.gate import check_gate

    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    fp16 = _parity("FP16", rpn_cls_prob_reshape_stride8={"passed": False, "reason": "cosine 0.9 < 0.9999"})
    cli._print_gate(check_gate(make_summary(parity={"ir-fp32": _parity("FP32"), "ir-fp16": fp16}), None, card))
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("gate FAIL: 1 of ")
    assert lines[-1] == ("hint: to find the first layer where ir-fp16 parts from mxnet, run: ssh-toolkit localize "
                         "--model ir-fp16 --weights toy --input-size 640 --data-root /data/wider-sample --index 0")


@pytest.mark.slow  # synthesizes the toy checkpoint
def test_commands_on_the_workspace_sample_say_when_it_is_missing(tmp_path, card):
    from ssh_toolkit.standins.toy import synthesize_toy
    from ssh_toolkit.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    synthesize_toy(card, ws.checkpoint_dir("toy"))
    for command in ("evaluate", "benchmark", "quantize"):
        r = runner.invoke(app, [command, "-w", str(ws.root), "--weights", "toy"])
        assert r.exit_code == 2, (command, r.output)
        assert r.output.strip().splitlines()[-1] == (
            f"ssh-toolkit: error: {ws.sample_data}: no dataset; pass --data-root or run 'ssh-toolkit make-sample'")
