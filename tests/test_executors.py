"""The Dask executor against the local one, a worker killed mid-run, and exact merging of shard runs.

Loopback only: one 2-worker LocalCluster (processes, 127.0.0.1) shared by the module; the toy detector at the
SMALL input size, converted to FP32 and FP16 (two IRs whose files have the same names: they must not be
confused when shipped to the workers).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys

import numpy as np
import pytest
from conftest import SMALL
from typer.testing import CliRunner

from ssh_toolkit.cli import app

_runner = CliRunner()


def cli(*args):
    return _runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------------------------------------- fast
def test_missing_dask_is_one_line_exit_3_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    r = cli("evaluate", "-w", tmp_path / "nothing-here", "--executor", "dask")
    assert r.exit_code == 3, r.output
    assert r.output.strip() == ("ssh-toolkit: error: --executor dask needs Dask's distributed scheduler, which is "
                                "not installed: pip install 'ssh-toolkit[dask]'")
    assert not (tmp_path / "nothing-here").exists()


def test_scheduler_without_the_dask_executor_is_a_usage_error(tmp_path):
    r = cli("evaluate", "-w", tmp_path, "--scheduler", "tcp://127.0.0.1:8786")
    assert r.exit_code == 2
    assert "ssh-toolkit: error: --scheduler needs --executor dask" in r.output


def test_decode_image_equals_read_image(sample_root):
    from ssh_toolkit.data.wider import decode_image, read_image
    from ssh_toolkit.errors import InputDataError

    path = next((sample_root / "WIDER_val" / "images").rglob("*.jpg"))
    assert np.array_equal(decode_image(path.read_bytes(), path), read_image(path))
    with pytest.raises(InputDataError, match="x.jpg: cannot decode image"):
        decode_image(b"not a jpeg", "x.jpg")


# ------------------------------------------------------------------------------------------------- slow
@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    ws = tmp_path_factory.mktemp("dask") / "ws"
    for args in (("synthesize", "--kind", "toy"), ("convert", "--weights", "toy", "--input-size", SMALL),
                 ("make-sample",)):
        r = cli(*args, "-w", ws)
        assert r.exit_code == 0, r.output
    return ws


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client

    from ssh_toolkit.executors.cluster import local_cluster

    with local_cluster(2) as c, Client(c) as client:
        yield c, client


def _fresh(ws, tmp_path, name):
    """A copy of the workspace without its cache."""
    dst = tmp_path / name
    shutil.copytree(ws, dst, ignore=shutil.ignore_patterns("cache"))
    return dst


def _evaluate(ws, run_dir, executor=None, **kw):
    from ssh_toolkit.card import load_card
    from ssh_toolkit.evaluation import evaluate, load_irs
    from ssh_toolkit.workspace import Checkpoint, Workspace

    card = load_card()
    w = Workspace(ws)
    ck = Checkpoint.load(w.checkpoint_dir("toy"))
    return evaluate(card, ck, load_irs(card, ck, w, SMALL), w.sample_data, w, input_size=SMALL, run_dir=run_dir,
                    progress=False, executor=executor, **kw)


def _comparable(run_dir) -> dict:
    """summary.json without what names the run (its id, time) or where the workspace was."""
    s = json.loads((run_dir / "summary.json").read_text())
    for key in ("run_id", "created"):
        s.pop(key)
    s["dataset"].pop("root")
    return s


@pytest.fixture(scope="module")
def local_run(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    _evaluate(toy, out)
    return out


def _cache_entries(ws) -> dict:
    entries = {}
    for f in sorted((ws / "cache" / "raw").rglob("*.npz")):
        with np.load(f) as z:
            entries[str(f.relative_to(ws))] = {k: z[k] for k in z.files if k != "__seconds"}
    return entries


def _assert_same_cache(a, b):
    ea, eb = _cache_entries(a), _cache_entries(b)
    assert ea.keys() == eb.keys() and len(ea) == 14 * 5  # 14 images x mxnet + 2 IRs x (f32, default)
    for k in ea:
        for name in ea[k]:
            assert np.array_equal(ea[k][name], eb[k][name]), (k, name)


@pytest.mark.slow  # a Dask cluster
def test_dask_executor_gives_the_local_summary_bit_for_bit(toy, local_run, cluster, tmp_path):
    from ssh_toolkit.executors import worker
    from ssh_toolkit.executors.cluster import DaskExecutor

    c, client = cluster
    ws = _fresh(toy, tmp_path, "ws")
    with DaskExecutor(c.scheduler_address, images_per_task=2) as ex:
        ev = _evaluate(ws, tmp_path / "run", ex)
    assert all(n == 14 for n in ev.inferred.values()) and len(ev.inferred) == 5
    assert _comparable(tmp_path / "run") == _comparable(local_run)  # mAP, parity, box match: every bit
    _assert_same_cache(toy, ws)
    # Each worker loaded each model at most once; together they ran all five.
    loads = client.run(worker.loads)
    assert all(len(keys) == len(set(keys)) for keys in loads.values()), loads
    assert len(set().union(*map(set, loads.values()))) == 5, loads


@pytest.mark.slow  # a Dask cluster, a worker process killed
def test_a_worker_killed_mid_run_changes_nothing(toy, local_run, cluster, tmp_path):
    from ssh_toolkit.executors.cluster import DaskExecutor

    c, client = cluster
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    killed = []

    class KillOnce(DaskExecutor):
        def infer(self, card, model, paths, todo, size, store):
            def store_and_kill(i, raw, hw):
                store(i, raw, hw)
                if not killed:  # after the first result, with the other tasks of this model in flight
                    killed.append(pids[victim])
                    os.kill(pids[victim], signal.SIGKILL)

            super().infer(card, model, paths, todo, size, store_and_kill)

    ws = _fresh(toy, tmp_path, "ws")
    with KillOnce(c.scheduler_address, images_per_task=2, window=7) as ex:
        _evaluate(ws, tmp_path / "run", ex, models=["mxnet", "ir-fp32"], exec_precisions=("f32",))
    assert killed
    client.wait_for_workers(2, timeout=60)
    assert pids[victim] not in client.run(os.getpid).values()  # it did die (the nanny started a new one)
    reference = _comparable(local_run)
    got = _comparable(tmp_path / "run")
    assert got["map"] == {m: reference["map"][m] for m in ("mxnet", "ir-fp32")}
    assert got["parity"]["ir-fp32"] == reference["parity"]["ir-fp32"]
    assert got["box_match"]["ir-fp32"] == reference["box_match"]["ir-fp32"]


@pytest.mark.slow  # evaluations of the toy (from the cache the local run filled)
def test_merge_of_three_shards_equals_the_unsharded_run(toy, local_run, tmp_path):
    shards = []
    for k in (1, 2, 3):
        shards.append(tmp_path / f"shard{k}")
        _evaluate(toy, shards[-1], shard=(k, 3))
    # Each shard names the whole selection it was cut from by its identifiers and ground truth (not its path).
    from ssh_toolkit.merge import load_shard

    whole = json.loads((local_run / "summary.json").read_text())["dataset"]
    assert load_shard(shards[1]).meta["base_identity"] == {k: whole[k] for k in ("identifiers_sha256",
                                                                                  "annotations_sha256")}
    merged = tmp_path / "merged" / local_run.name  # the run id is in the report
    r = cli("merge", *shards, "--out", merged)
    assert r.exit_code == 0, r.output
    assert _comparable(merged) == _comparable(local_run)
    # Every table equals the single run's, byte for byte; the report differs in its run id only.
    for table in sorted(p.name for p in local_run.iterdir() if p.suffix in (".csv", ".json")):
        if table not in ("summary.json", "metadata.json", ".ssh-toolkit.json"):
            assert (merged / table).read_bytes() == (local_run / table).read_bytes(), table
    assert (merged / "report.md").read_bytes() == (local_run / "report.md").read_bytes()

    # Merging a merge of 1/3 + 2/3 with 3/3 gives the same again.
    assert cli("merge", shards[0], shards[1], "--out", tmp_path / "m12").exit_code == 0
    assert json.loads((tmp_path / "m12" / "summary.json").read_text())["dataset"]["selection"] == "shards 1,2/3"
    assert cli("merge", tmp_path / "m12", shards[2], "--out", tmp_path / "m123").exit_code == 0
    assert _comparable(tmp_path / "m123") == _comparable(local_run)

    # Overlapping shards are refused, naming both, and nothing is written.
    r = cli("merge", shards[0], tmp_path / "m12", "--out", tmp_path / "bad")
    assert r.exit_code == 2
    assert f"ssh-toolkit: error: {tmp_path / 'm12'}: overlaps {shards[0]}: both hold shard 1/3" in r.output
    assert not (tmp_path / "bad").exists()
    # So is a run of another shard count, or of other models.
    r = cli("merge", shards[0], local_run, "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "shard count N differs (1 vs 3)" in r.output
    _evaluate(toy, tmp_path / "f32-only", shard=(2, 3), exec_precisions=("f32",))
    r = cli("merge", shards[0], tmp_path / "f32-only", "--out", tmp_path / "bad")
    assert r.exit_code == 2 and "not mergeable with" in r.output and "models differs" in r.output
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow  # a subprocess CLI run with its own local cluster
def test_ctrl_c_on_the_dask_executor_keeps_what_is_cached_and_the_same_command_resumes(toy, tmp_path):
    """Ctrl-C at a terminal reaches the whole process group (driver and workers): one line, exit 130, the
    cached outputs kept; the same command then infers only the rest."""
    import subprocess
    import time

    from ssh_toolkit.data.sample import make_sample

    data = make_sample(tmp_path / "data", seed=1, n_images=40)
    ws = _fresh(toy, tmp_path, "ws")
    cmd = [sys.executable, "-m", "ssh_toolkit", "evaluate", "-w", str(ws), "--weights", "toy", "--model", "mxnet",
           "--data-root", str(data), "--input-size", "640", "--executor", "dask", "--report-dir",
           str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((ws / "cache").rglob("*.npz")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert err.rstrip().endswith("ssh-toolkit: interrupted; finished work is kept, run the same command again to "
                                 "resume")
    kept = len(list((ws / "cache").rglob("*.npz")))
    assert 1 <= kept < 40 and not (tmp_path / "run").exists()
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "map[mxnet] = " in r.stdout and f"(40 images, {40 - kept} inferred)" in r.stdout, r.stdout


@pytest.mark.parametrize("address, reason", [("foo", "missing port number in address 'foo'"),
                                             ("tcp://host", "missing port number"),
                                             ("http://host:8786", "unknown address scheme 'http'")])
def test_a_scheduler_address_dask_cannot_use_is_one_line_exit_2_before_any_work(tmp_path, address, reason):
    pytest.importorskip("distributed")
    r = cli("evaluate", "-w", tmp_path / "nothing-here", "--executor", "dask", "--scheduler", address)
    assert r.exit_code == 2, r.output
    assert r.output.startswith(f"ssh-toolkit: error: --scheduler {address}: not a Dask scheduler address (")
    assert reason in r.output and "expected e.g. tcp://scheduler-host:8786" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "nothing-here").exists()


def test_a_scheduler_lost_mid_run_is_one_line_exit_3_saying_the_cache_is_kept():
    """Seen with 'dask scheduler' killed during 'evaluate --scheduler': every pending future raises
    FutureCancelledError (reason scheduler-connection-lost)."""
    pytest.importorskip("distributed")
    from distributed.client import FutureCancelledError

    from ssh_toolkit.errors import EnvironmentProblem
    from ssh_toolkit.executors.cluster import DaskExecutor
    from ssh_toolkit.inference import ModelUnderTest

    class Lost:
        def result(self):
            raise FutureCancelledError("ssh-toolkit-mxnet-b119d900-8", "scheduler-connection-lost",
                                       "Client lost the connection to the scheduler.\\nPlease check your connection.")

    ex = DaskExecutor("tcp://127.0.0.1:8799")
    with pytest.raises(EnvironmentProblem) as e:
        ex._result(Lost(), ModelUnderTest("mxnet", "FP32", "k", "mxnet", make_runner=None))
    assert e.value.exit_code == 3
    assert str(e.value).startswith("tcp://127.0.0.1:8799: the Dask cluster dropped mxnet's work (")
    assert "\n" not in str(e.value) and str(e.value).endswith(
        "what is cached is kept: run the same command again, on this cluster or with --executor local, to finish")
