"""The run record: summary.json format 2, format-1 summaries upgraded on load, model order from the precisions;
default run folders unique across processes and never left behind empty."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from gate.records import make_summary

from ssh_toolkit import run_record
from ssh_toolkit.errors import InputDataError
from ssh_toolkit.metric.box_match import BoxMatch
from ssh_toolkit.run_record import (
    SUMMARY_FORMAT,
    OutputParity,
    RunSummary,
    default_run_dir,
    ir_model_name,
    order_models,
    release_unused_run_dirs,
)


def _format1(summary: RunSummary) -> dict:
    """``summary`` as an ssh-toolkit of summary format 1 wrote it (no format key, older vocabulary)."""
    d = summary.to_json()
    del d["format"]
    d["weights"] = "stand-in"
    d["detection_parity"] = {m: {("match_rate" if k == "box_match_rate" else k): v for k, v in b.items()}
                             for m, b in d.pop("box_match").items()}
    for outs in d["parity"].values():
        for o in outs.values():
            o["problem"] = o.pop("reason")
            del o["rtol"]
    return d


def test_summary_round_trip_records_format_2_vocabulary(tmp_path):
    s = make_summary()
    data = json.loads(s.save(tmp_path / "run").read_text())
    assert data["format"] == SUMMARY_FORMAT == 2 and data["weights"] == "standin"
    assert data["box_match"]["ir-fp16"]["box_match_rate"] == 0.98 and "detection_parity" not in data
    assert set(data["parity"]["ir-fp32"]["rpn_bbox_pred_stride8"]) == {
        "max_abs", "min_passing_atol", "atol", "cosine", "min_cosine", "passed", "reason", "rtol"}
    back = RunSummary.load(tmp_path / "run")
    assert back == dataclasses.replace(s, protocol_params=json.loads(json.dumps(s.protocol_params)))


def test_format_1_summary_is_upgraded_on_load(tmp_path):
    s = make_summary()
    d = _format1(s)
    out = d["parity"]["ir-fp16"]
    out["rpn_bbox_pred_stride8"].update(passed=False, problem="")  # a failed tolerance: no reason recorded then
    out["rpn_cls_prob_reshape_stride8"].update(passed=False, problem="shape mismatch: reference (1,) vs test (2,)")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps(d))
    old = RunSummary.load(tmp_path / "run")
    assert old.format == 2 and old.weights == "standin"
    assert old.box_match == s.box_match and isinstance(old.box_match["ir-fp32"], BoxMatch)
    p = old.parity["ir-fp16"]
    assert p["rpn_bbox_pred_stride8"].reason == "failed (reason not recorded by this format-1 summary)"
    assert p["rpn_cls_prob_reshape_stride8"].reason == "shape mismatch: reference (1,) vs test (2,)"
    assert p["rpn_bbox_pred_stride16"] == OutputParity(1.6e-2, 1.6e-2, 0.05, 0.99998, 0.9999, True, "", None)


def test_newer_summary_format_is_a_one_line_input_error(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text(json.dumps({**make_summary().to_json(), "format": 3}))
    with pytest.raises(InputDataError, match=r"summary.json: not a valid run summary: format 3 is newer than this "
                                             r"ssh-toolkit reads \(2\)$") as e:
        RunSummary.load(tmp_path / "run")
    assert e.value.exit_code == 2


def test_models_are_ordered_by_the_recorded_precisions_not_a_fixed_list():
    assert order_models(["x", "ir-fp16", "mxnet", "ir-fp32", "ir-fp16"], ["FP32", "FP16"]) == [
        "mxnet", "ir-fp32", "ir-fp16", "x"]
    assert order_models(["ir-fp32", "ir-int8", "mxnet"], ["INT8", "FP32"]) == ["mxnet", "ir-int8", "ir-fp32"]
    s = make_summary(precisions={"mxnet": "FP32", "ir-fp16": "FP16", "ir-fp32": "FP32"})
    assert s.ir_precisions == ("FP16", "FP32")
    assert s.ordered_models(s.map) == ["mxnet", "ir-fp16", "ir-fp32"]

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
            "sys.stdout.flush()\nsys.stdin.read()\n"  # alive until all have reserved (reservations are per process)
            "import os\nos._exit(0)\n")  # keep the folders: skip the exit-time release
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    names = [p.stdout.readline().strip() for p in procs for _ in range(20)]
    for p in procs:
        p.communicate("")
    assert all(p.returncode == 0 for p in procs)
    assert len(names) == 80 and len(set(names)) == 80
    assert len(list((tmp_path / "reports" / "runs").iterdir())) == 80


def test_a_process_that_fails_leaves_no_empty_reserved_folder(tmp_path):
    code = "from ssh_toolkit.run_record import default_run_dir\ndefault_run_dir('toy-640')\nraise SystemExit(2)\n"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path)
    assert r.returncode == 2
    assert (tmp_path / "reports" / "runs").is_dir() and list((tmp_path / "reports" / "runs").iterdir()) == []


def test_reserved_folders_of_killed_processes_are_removed_by_the_next_run(tmp_path, monkeypatch):
    """Finding 14: kill -9 (or SIGTERM) of evaluate left its empty reserved run folder forever (released only at
    exit). The reservation records its process; the next run removes those of dead processes on this host, and
    nothing else: a user's empty folder, a reservation a user put a file into, a live process's reservation."""
    from ssh_toolkit.fileio import MARKER

    code = ("from ssh_toolkit.run_record import default_run_dir\nprint(default_run_dir('toy-640'))\n"
            "print(default_run_dir('toy-640'))\n"
            "import os, sys\nsys.stdout.flush()\nos._exit(0)\n")  # like kill -9: no exit-time release
    killed = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            check=True).stdout.split()
    runs = tmp_path / "reports" / "runs"
    assert all((tmp_path / k).is_dir() for k in killed)
    marker = json.loads((tmp_path / killed[0] / MARKER).read_text())
    assert marker["state"] == "reserved" and marker["files"] == {} and isinstance(marker["pid"], int)
    (tmp_path / killed[1] / "notes.txt").write_text("mine")  # the user wrote into one: not the toolkit's to delete
    (runs / "my-empty-folder").mkdir()
    monkeypatch.chdir(tmp_path)
    alive = default_run_dir("toy-128")  # this process: alive (another name than the killed ones)
    again = default_run_dir("toy-128")
    assert not (tmp_path / killed[0]).exists()
    assert (tmp_path / killed[1] / "notes.txt").read_text() == "mine"
    assert (runs / "my-empty-folder").is_dir() and (tmp_path / alive).is_dir() and (tmp_path / again).is_dir()
    assert sorted(release_unused_run_dirs()) == sorted([tmp_path / alive, tmp_path / again])
    assert sorted(p.name for p in runs.iterdir()) == sorted(["my-empty-folder", Path(killed[1]).name])


def test_a_reserved_folder_is_a_valid_report_dir_only_for_its_own_or_a_dead_process(tmp_path, monkeypatch):
    from ssh_toolkit.errors import UsageError
    from ssh_toolkit.fileio import MARKER, check_replaceable

    monkeypatch.chdir(tmp_path)
    mine = default_run_dir("toy-640")
    check_replaceable(mine, "run")  # the run writes into the folder it reserved
    other = tmp_path / "reports" / "runs" / "other"
    other.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        marker = json.loads((mine / MARKER).read_text())
        (other / MARKER).write_text(json.dumps({**marker, "pid": sleeper.pid}))
        with pytest.raises(UsageError, match=rf"other: reserved by a running ssh-toolkit \(pid {sleeper.pid}\)"):
            check_replaceable(other, "run")
    finally:
        sleeper.kill()
        sleeper.wait()
    check_replaceable(other, "compare")  # its process is gone (a reservation takes a run or a compare)
    release_unused_run_dirs()


def test_execution_variants_follow_their_ir():
    models = ["ir-fp16@bf16", "ir-fp32@bf16", "ir-fp16", "zzz", "ir-fp32", "mxnet"]
    assert order_models(models, ("FP32", "FP16")) == ["mxnet", "ir-fp32", "ir-fp32@bf16", "ir-fp16", "ir-fp16@bf16",
                                                      "zzz"]
    assert order_models(models, ("FP32", "FP32@bf16", "FP16")) == order_models(models, ("FP32", "FP16"))


def test_native_route_models_are_named_apart_and_follow_model_optimizers():
    assert ir_model_name("FP32") == "ir-fp32" and ir_model_name("FP16", "bf16") == "ir-fp16@bf16"
    assert ir_model_name("FP32", route="native") == "ir-native-fp32"
    assert ir_model_name("FP16", "bf16", "native") == "ir-native-fp16@bf16"
    models = ["ir-native-fp16", "ir-native-fp32@bf16", "ir-fp16", "ir-native-fp32", "zzz", "ir-fp32", "mxnet"]
    assert order_models(models, ("FP32", "FP16")) == ["mxnet", "ir-fp32", "ir-fp16", "ir-native-fp32",
                                                      "ir-native-fp32@bf16", "ir-native-fp16", "zzz"]


def test_a_file_in_place_of_the_runs_folder_is_named_absolutely(tmp_path, monkeypatch):
    """Review finding 19: a file at reports/runs gave 'reports/runs: File exists' (relative, unclear)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "runs").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        default_run_dir("toy-640")
    assert info.value.filename == str(tmp_path / "reports" / "runs")
    assert (tmp_path / "reports" / "runs").read_text() == "x"


def test_a_summary_with_a_utf8_bom_loads(tmp_path):
    """Review finding 19: a UTF-8 byte order mark made summary.json 'not a valid run summary'."""
    make_summary(run_id="r1").save(tmp_path)
    path = tmp_path / "summary.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert RunSummary.load(tmp_path).run_id == "r1"


# ------------------------------------------------------------- a summary.json with wrong types (finding 9)


def _set(path: str, value):
    def change(d):
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value
    return change


def _del(key: str):
    return lambda d: d.pop(key)


BAD_SUMMARIES = [
    (_set("map.mxnet", "high"), "map.mxnet", "expected a number, got 'high'"),
    (_set("map", None), "map", "expected a JSON object, got None"),
    (_set("parity", []), "parity", "expected a JSON object, got []"),
    (_set("parity.ir-fp32", "x"), "parity.ir-fp32", "expected a JSON object, got 'x'"),
    (_set("parity.ir-fp32.rpn_bbox_pred_stride8.max_abs", "big"), "parity.ir-fp32.rpn_bbox_pred_stride8.max_abs",
     "expected a number, got 'big'"),
    (_set("parity.ir-fp32.rpn_bbox_pred_stride8.passed", "yes"), "parity.ir-fp32.rpn_bbox_pred_stride8.passed",
     "expected true or false, got 'yes'"),
    (_set("dataset", "x"), "dataset", "expected a JSON object, got 'x'"),
    (_set("box_match", 5), "box_match", "expected a JSON object, got 5"),
    (_set("box_match.ir-fp16.matched", 1.5), "box_match.ir-fp16.matched", "expected an integer, got 1.5"),
    (_set("precisions", None), "precisions", "expected a JSON object, got None"),
    (_set("precisions.mxnet", 32), "precisions.mxnet", "expected a string, got 32"),
    (_set("input_size", "128"), "input_size", "expected an integer, got '128'"),
    (_set("n_images", True), "n_images", "expected an integer, got True"),
    (_set("official", {"mxnet": {"easy": "x"}}), "official.mxnet.easy", "expected a number, got 'x'"),
    (_del("weights"), "weights", "missing"),
    (_set("surprise", 1), "surprise", "unknown key"),
]


@pytest.mark.parametrize("change, key, what", BAD_SUMMARIES)
def test_a_summary_with_wrong_types_is_not_a_valid_run_summary_naming_the_key(tmp_path, change, key, what):
    data = make_summary().to_json()
    change(data)
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(data))
    with pytest.raises(InputDataError) as e:
        RunSummary.load(run)
    assert str(e.value) == f"{run / 'summary.json'}: not a valid run summary: key '{key}': {what}"
    assert e.value.exit_code == 2


def test_a_summary_that_is_not_an_object_is_not_valid(tmp_path):
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(InputDataError, match=r"summary.json: not a valid run summary: expected a JSON object, got a "
                                             r"list$"):
        RunSummary.load(tmp_path)


@pytest.mark.parametrize("change, key", [(c, k) for c, k, _ in BAD_SUMMARIES[:4] + BAD_SUMMARIES[6:8]
                                         + BAD_SUMMARIES[11:12]])
def test_gate_and_report_refuse_a_wrongly_typed_summary_in_one_line(tmp_path, change, key):
    from pathlib import Path

    from typer.testing import CliRunner

    from ssh_toolkit.cli import app

    data = make_summary().to_json()
    change(data)
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps(data))
    baseline = Path(run_record.__file__).parent / "baselines" / "ssh-mxnet-toy-640.json"
    for args in (["gate", str(run), "--baseline", str(baseline)], ["report", str(run)]):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert r.output.startswith(f"ssh-toolkit: error: {run / 'summary.json'}: not a valid run summary: key "
                                   f"'{key}': "), (args, r.output)
        assert "Traceback" not in r.output and r.output.count("\n") == 1
    assert not (run / "report.html").exists()


def test_a_box_match_record_lacking_a_figure_names_it(tmp_path):
    data = make_summary().to_json()
    del data["box_match"]["ir-fp16"]["n_ref"]
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(InputDataError, match=r"not a valid run summary: key 'box_match.ir-fp16.n_ref': missing$"):
        RunSummary.load(tmp_path)
