"""evaluate(): caching, resume after an interruption, missing images, and the run records (stand-in, small size)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from conftest import SMALL

from ssh_toolkit.cache import RawCache
from ssh_toolkit.errors import InputDataError, UsageError
from ssh_toolkit.evaluation import evaluate, load_irs
from ssh_toolkit.run_record import RunSummary
from ssh_toolkit.workspace import Workspace

pytestmark = pytest.mark.slow  # each test needs the converted standin workspace (Model Optimizer): not in the fast lane


@pytest.fixture()
def ws_copy(standin_ws, tmp_path):
    ws, ck, _ = standin_ws
    root = tmp_path / "ws"
    shutil.copytree(ws.root, root, ignore=shutil.ignore_patterns("cache"))
    ws2 = Workspace(root)
    from ssh_toolkit.workspace import Checkpoint

    return ws2, Checkpoint.load(ws2.checkpoint_dir("standin"))


def _eval(card, ws, ck, data, run_dir, **kw):
    kw.setdefault("exec_precisions", ("f32",))  # the parity models; the deploy default is tested on its own
    return evaluate(card, ck, load_irs(card, ck, ws, SMALL), data, ws, input_size=SMALL, run_dir=run_dir,
                    progress=False, **kw)


def test_interrupted_run_resumes_without_reinferring(card, ws_copy, sample_root, tmp_path, monkeypatch):
    ws, ck = ws_copy
    calls = {"n": 0}
    real_put = RawCache.put

    def flaky_put(self, key, raw, hw):
        calls["n"] += 1
        if calls["n"] == 3:  # the third image of the first model: as if the user pressed Ctrl-C
            raise KeyboardInterrupt
        real_put(self, key, raw, hw)

    monkeypatch.setattr(RawCache, "put", flaky_put)
    with pytest.raises(KeyboardInterrupt):
        _eval(card, ws, ck, sample_root, tmp_path / "run0", limit=5)
    assert not (tmp_path / "run0").exists()  # no partial run folder
    monkeypatch.setattr(RawCache, "put", real_put)

    resumed = _eval(card, ws, ck, sample_root, tmp_path / "run1", limit=5)
    assert resumed.inferred == {"mxnet": 3, "ir-fp32": 5, "ir-fp16": 5}  # 2 mxnet images were already done
    again = _eval(card, ws, ck, sample_root, tmp_path / "run2", limit=5)
    assert again.inferred == {"mxnet": 0, "ir-fp32": 0, "ir-fp16": 0}
    assert again.summary.map == resumed.summary.map

    # the same numbers as an uninterrupted run in a fresh workspace
    fresh_ws = Workspace(tmp_path / "fresh")
    shutil.copytree(ws.root / "checkpoints", fresh_ws.root / "checkpoints")
    shutil.copytree(ws.root / "ir", fresh_ws.root / "ir")
    from ssh_toolkit.workspace import Checkpoint

    fresh = _eval(card, fresh_ws, Checkpoint.load(fresh_ws.checkpoint_dir("standin")), sample_root,
                  tmp_path / "run3", limit=5)
    assert fresh.inferred["mxnet"] == 5
    assert fresh.summary.map == resumed.summary.map
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "run3" / "parity.csv"),
                                  pd.read_csv(tmp_path / "run1" / "parity.csv"))


def test_run_folder_records(card, ws_copy, sample_root, tmp_path):
    ws, ck = ws_copy
    run = tmp_path / "run"
    ev = _eval(card, ws, ck, sample_root, run, models=["mxnet", "ir-fp32"], shard=(1, 2))
    s = RunSummary.load(run)
    assert s == ev.summary
    raw = json.loads((run / "summary.json").read_text())
    assert set(raw["map"]) == {"mxnet", "ir-fp32"} and raw["weights"] == "standin"
    assert raw["n_images"] == 7 and raw["dataset"]["selection"] == "shard 1/2"
    assert raw["protocol"] == "omz-ac-retinaface-wider" and raw["protocol_params"]["keep_top_k"] == 1000
    # the workspace, for the localize command the gate suggests when a parity rule fails
    meta = json.loads((run / "metadata.json").read_text())
    assert (meta["workspace"], meta["data_root"]) == (str(ws.root.absolute()), str(sample_root.absolute()))
    for table in ("metrics", "per_image", "pr_curves", "parity", "parity_histograms", "box_match"):
        assert (run / f"{table}.csv").is_file() and (run / f"{table}.json").is_file(), table
    per_image = pd.read_csv(run / "per_image.csv")
    assert len(per_image) == 14 and set(per_image["model"]) == {"mxnet", "ir-fp32"}
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics.set_index("model").loc["mxnet", "n_detections"] == per_image.query("model == 'mxnet'")[
        "n_detections"].sum()
    md = (run / "report.md").read_text()
    assert "STAND-IN WEIGHTS" in md and "NOT the accuracy of SSH" in md
    assert s.box_match["ir-fp32"].box_match_rate > 0.99
    assert all(o.passed for o in s.parity["ir-fp32"].values())


def test_missing_images_stop_before_inference_unless_skipped(card, ws_copy, sample_root, tmp_path):
    ws, ck = ws_copy
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    victim = next((data / "WIDER_val" / "images").rglob("*.jpg"))
    victim.unlink()
    with pytest.raises(InputDataError, match=r"1 of 14 images missing or unreadable: .*" + victim.name):
        _eval(card, ws, ck, data, tmp_path / "run", models=["mxnet"])
    assert not (ws.cache / "raw").exists()  # nothing was inferred
    ev = _eval(card, ws, ck, data, tmp_path / "run", models=["mxnet"], skip_missing=True)
    assert ev.summary.n_images == 13 and len(ev.summary.dataset["skipped"]) == 1
    assert victim.name in (tmp_path / "run" / "report.md").read_text()


def test_unknown_model_is_a_usage_error(card, ws_copy, sample_root, tmp_path):
    ws, ck = ws_copy
    with pytest.raises(UsageError, match="--model ir-fp64 is not available; available: mxnet, ir-fp32, ir-fp16"):
        _eval(card, ws, ck, sample_root, tmp_path / "run", models=["ir-fp64"])
    # A model the card knows, whose IR is missing, names the command that makes it.
    with pytest.raises(UsageError, match="--model ir-int8: not quantized at input size .*; run 'ssh-toolkit quantize "):
        _eval(card, ws, ck, sample_root, tmp_path / "run", models=["ir-int8"])


def test_a_model_not_converted_at_the_input_size_is_a_usage_error_naming_the_command(card, ws_copy, sample_root,
                                                                                     tmp_path):
    ws, ck = ws_copy
    irs = load_irs(card, ck, ws, SMALL, ["FP32"])
    with pytest.raises(UsageError, match=r"--model ir-fp16: not converted at input size 128; run 'ssh-toolkit "
                                         r"convert --weights standin --input-size 128 --precision FP16' first"):
        evaluate(card, ck, irs, sample_root, ws, input_size=SMALL, models=["ir-fp16"], run_dir=tmp_path / "r",
                 progress=False)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("size", [100, 0])
def test_input_size_follows_the_rule_of_convert(card, ws_copy, sample_root, tmp_path, size):
    ws, ck = ws_copy
    with pytest.raises(UsageError, match=f"--input-size {size}: must be a positive multiple of 32"):
        evaluate(card, ck, [], sample_root, ws, input_size=size, run_dir=tmp_path / "r", progress=False)


def _truncate_first_image(sample_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    first = sorted((data / "WIDER_val" / "images").rglob("*.jpg"))[0]
    blob = first.read_bytes()
    first.write_bytes(blob[: len(blob) * 2 // 3])  # OpenCV still decodes it, greying the missing rows
    return data, first


def test_a_truncated_jpeg_is_named_in_the_output_and_report(card, ws_copy, sample_root, tmp_path, capsys):
    import cv2

    ws, ck = ws_copy
    data, first = _truncate_first_image(sample_root, tmp_path)
    assert cv2.imread(str(first)) is not None  # the damage is silent for the decoder
    ident = f"{first.parent.name}/{first.name}"
    ev = evaluate(card, ck, load_irs(card, ck, ws, SMALL, ["FP32"]), data, ws, input_size=SMALL, limit=3,
                  run_dir=tmp_path / "run", progress=False)
    assert list(ev.image_warnings) == [ident]
    assert "truncated JPEG" in ev.image_warnings[ident]
    assert f"warning: {first}: truncated JPEG" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "run" / "image_warnings.csv")
    assert table["image"].tolist() == [ident]
    assert ev.summary.dataset["image_warnings"] == {ident: ev.image_warnings[ident]}
    assert "image_warnings" in (tmp_path / "run" / "report.md").read_text()


def test_strict_images_refuses_a_truncated_jpeg_before_inference(card, ws_copy, sample_root, tmp_path):
    ws, ck = ws_copy
    data, first = _truncate_first_image(sample_root, tmp_path)
    with pytest.raises(InputDataError, match=f"{first}: truncated JPEG.*--strict-images refuses damaged images"):
        evaluate(card, ck, load_irs(card, ck, ws, SMALL, ["FP32"]), data, ws, input_size=SMALL, limit=3,
                 run_dir=tmp_path / "run", progress=False, strict_images=True)
    assert not (ws.cache / "raw").exists()
    assert not (tmp_path / "run").exists()


def test_official_wider_ap_is_a_separate_metric(card, ws_copy, sample_root, tmp_path):
    """--official-gt: the official Easy/Medium/Hard AP from .mat files, recorded apart from the OMZ mAP."""
    from conftest import write_mats

    from ssh_toolkit.data.wider import open_wider
    from ssh_toolkit.data.wider_official_gt import load_official_ground_truth

    ds = open_wider(sample_root)
    scene: dict[str, list] = {}
    for im in ds.images:
        xywh = im.boxes.copy()
        xywh[:, 2:] -= xywh[:, :2]
        heights = xywh[:, 3]
        keep = {"easy": [i + 1 for i, h in enumerate(heights) if h >= 200],
                "medium": [i + 1 for i, h in enumerate(heights) if h >= 64],
                "hard": [i + 1 for i in range(len(heights))]}
        event, name = im.identifier.split("/")
        scene.setdefault(event, []).append((name.removesuffix(".jpg"), xywh, keep))
    mats = write_mats(tmp_path / "gt", scene)

    run = tmp_path / "run"
    ws, ck = ws_copy
    ev = _eval(card, ws, ck, sample_root, run, models=["mxnet", "ir-fp32"], official_gt=mats)
    official = ev.summary.official
    assert set(official) == {"mxnet", "ir-fp32"} and set(official["mxnet"]) == {"easy", "medium", "hard"}
    expected = load_official_ground_truth(mats).subset(ds.identifiers).evaluate(
        dict(zip(ds.identifiers, ev.scores[0].detections)))
    assert official["mxnet"] == expected
    table = pd.read_csv(run / "official.csv")
    assert len(table) == 6 and set(table["setting"]) == {"easy", "medium", "hard"}
    assert "NOT comparable with the mAP" in (run / "report.md").read_text()

    with pytest.raises(InputDataError, match="wider_hard_val.mat: missing"):
        (mats / "wider_hard_val.mat").unlink()
        _eval(card, ws, ck, sample_root, tmp_path / "run2", models=["mxnet"], official_gt=mats)
    assert not (tmp_path / "run2").exists()


def test_corrupt_cache_entry_is_reinferred_in_the_same_run(card, ws_copy, sample_root, tmp_path, capsys):
    """Finding 15: a damaged entry was deleted but stopped the run ("run the same command again")."""
    ws, ck = ws_copy
    first = _eval(card, ws, ck, sample_root, tmp_path / "run0", models=["mxnet"], limit=2)
    entries = sorted((ws.cache / "raw").rglob("*.npz"))
    assert len(entries) == 2
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # truncated by something outside the toolkit
    capsys.readouterr()
    ev = _eval(card, ws, ck, sample_root, tmp_path / "run1", models=["mxnet"], limit=2)
    assert ev.inferred == {"mxnet": 1} and ev.summary.map == first.summary.map
    assert (f"warning: {entries[0]}: corrupt cache entry (BadZipFile); inferring that image again"
            in capsys.readouterr().err)


def test_cache_key_follows_the_preprocessing(card, ws_copy, sample_root, tmp_path):
    """A changed mean in the card must not be served the old raw outputs."""
    import dataclasses

    from ssh_toolkit.card import SidePreprocess

    ws, ck = ws_copy
    first = _eval(card, ws, ck, sample_root, tmp_path / "a", models=["mxnet"], limit=1)
    shifted = dataclasses.replace(card, preprocess={**card.preprocess, "mxnet": SidePreprocess("RGB", (0.0, 0.0, 0.0))})
    second = _eval(shifted, ws, ck, sample_root, tmp_path / "b", models=["mxnet"], limit=1)
    assert first.inferred == second.inferred == {"mxnet": 1}


def test_a_foreign_report_folder_is_never_replaced(card, ws_copy, sample_root, tmp_path):
    ws, ck = ws_copy
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match=r"mine: exists and was not written by ssh-toolkit \(no \.ssh-toolkit\.json\); it holds precious.txt"):
        _eval(card, ws, ck, sample_root, mine, models=["mxnet"], limit=1)
    assert (mine / "precious.txt").read_text() == "keep me"
    assert not (ws.cache / "raw").exists()  # refused before any inference
    # a folder the toolkit wrote is replaced as a whole
    _eval(card, ws, ck, sample_root, tmp_path / "run", models=["mxnet"], limit=1)
    _eval(card, ws, ck, sample_root, tmp_path / "run", models=["mxnet"], limit=1)
    assert (tmp_path / "run" / "summary.json").is_file()

    from ssh_toolkit.data.sample import make_sample

    with pytest.raises(UsageError, match=r"no \.ssh-toolkit\.json"):
        make_sample(mine)
    assert (mine / "precious.txt").read_text() == "keep me"


@pytest.mark.slow
def test_killed_process_resumes_where_it_stopped(card, standin_ws, sample_root, tmp_path):
    """A real kill -9 of `ssh-toolkit evaluate` part-way, then the same command: only the rest is inferred."""
    import os
    import signal
    import subprocess
    import sys
    import time

    ws = tmp_path / "ws"
    shutil.copytree(standin_ws[0].checkpoint_dir("standin"), ws / "checkpoints" / "standin")
    cmd = [sys.executable, "-m", "ssh_toolkit.cli", "evaluate", "-w", str(ws), "--weights", "standin",
           "--model", "mxnet", "--data-root", str(sample_root), "--limit", "6", "--input-size", "640"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*cmd, "--report-dir", str(tmp_path / "run0")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache = ws / "cache" / "raw"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(cache.rglob("*.npz"))) < 2:
        assert proc.poll() is None, "evaluate finished before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(cache.rglob("*.npz")))
    assert 2 <= done < 6 and not (tmp_path / "run0").exists()

    r = subprocess.run([*cmd, "--report-dir", str(tmp_path / "run1")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"({6} images, {6 - done} inferred)" in r.stdout
    again = subprocess.run([*cmd, "--report-dir", str(tmp_path / "run2")], env=env, capture_output=True, text=True)
    assert "(6 images, from cache)" in again.stdout
    s1, s2 = RunSummary.load(tmp_path / "run1"), RunSummary.load(tmp_path / "run2")
    assert s1.map == s2.map and s1.n_images == 6
