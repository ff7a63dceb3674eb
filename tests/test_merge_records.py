"""merge reads detections.npz defensively: a damaged or edited record is one line, exit 2, never a traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "gate"))
from records import make_summary  # noqa: E402

from ssh_toolkit.cli import app  # noqa: E402
from ssh_toolkit.errors import UsageError  # noqa: E402
from ssh_toolkit.merge import RECORDS, load_shard, write_records  # noqa: E402
from ssh_toolkit.model.detections import Detections  # noqa: E402


def _shard(folder: Path, k: int, root: str = "/data/wider-sample", identity: str = "ab") -> Path:
    """A run folder of shard k/2 of four images, MXNet only (no parity), with its record."""
    from ssh_toolkit.card import DEFAULT_CARD
    from ssh_toolkit.fileio import sha256_file

    folder.mkdir(parents=True)
    make_summary(map={"mxnet": 50.0}, precisions={"mxnet": "FP32"}, parity={}, box_match={}, n_images=2,
                 dataset={"root": root, "split": "val", "n_images": 2, "selection": f"shard {k}/2"},
                 card_sha256=sha256_file(DEFAULT_CARD)).save(folder)
    dets = [Detections(np.array([[1.0, 2.0, 30.0, 40.0]] * n), np.full(n, 0.5, np.float32)) for n in (1, 2)]
    write_records(folder, meta={"models": {"mxnet": "mxnet-k"}, "base_selection": "all", "shards": [k],
                                "base_identity": {"identifiers_sha256": "12" * 32, "annotations_sha256": identity * 32},
                                "n_shards": 2, "limit": None, "checkpoint": {}, "irs": []},
                  ids=[f"a/{k}", f"b/{k}"], positions=[k - 1, k + 1], image_keys=["x", "y"],
                  gt=[np.zeros((0, 4)), np.array([[0.0, 0.0, 10.0, 10.0]])], skipped=[],
                  detections={"mxnet": dets}, seconds={"mxnet": np.array([0.1, 0.2])}, parity={})
    return folder


def _rewrite(path: Path, **changes) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez_compressed(path, **arrays)


def test_a_valid_record_loads(tmp_path):
    run = load_shard(_shard(tmp_path / "s1", 1))
    assert run.positions.tolist() == [0, 2] and run.meta["shards"] == [1]


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:600]), "(BadZipFile)"),
    (lambda p: p.write_bytes(b"garbage"), "not a valid per-image record"),
    (lambda p: _rewrite(p, **{"det::mxnet::boxes": None}), "array 'det::mxnet::boxes' missing"),
    (lambda p: _rewrite(p, **{"det::mxnet::counts": np.array([1])}),
     "array 'det::mxnet::counts' has shape (1,), expected (2)"),
    (lambda p: _rewrite(p, **{"det::mxnet::counts": np.array([1, 5])}), "array 'det::mxnet::boxes' has shape"),
    (lambda p: _rewrite(p, gt_boxes=np.zeros((1, 3))), "array 'gt_boxes' has shape (1, 3)"),
    (lambda p: _rewrite(p, meta=np.asarray(json.dumps([1]))), "its metadata is not a JSON object"),
    (lambda p: _rewrite(p, meta=np.asarray(json.dumps({"format": 1, "models": {}}))),
     "metadata key 'base_selection' missing"),
])
def test_a_damaged_record_is_one_line_exit_2(tmp_path, damage, message):
    s1, s2 = _shard(tmp_path / "s1", 1), _shard(tmp_path / "s2", 2)
    damage(s2 / RECORDS)
    r = CliRunner().invoke(app, ["merge", str(s1), str(s2), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert r.output.startswith(f"ssh-toolkit: error: {s2 / RECORDS}: ") and message in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_shards_of_one_dataset_at_other_paths_merge_and_of_other_ground_truth_do_not(tmp_path, card):
    """A job array may read copies of the dataset (a node's local disk, a relative path): the selection's
    identifiers and ground truth decide, not the path; the same path holding other annotations is refused."""
    from ssh_toolkit.merge import check_mergeable

    s1 = load_shard(_shard(tmp_path / "s1", 1, root="data/wider-sample"))
    check_mergeable([s1, load_shard(_shard(tmp_path / "s2", 2, root="/scratch/node7/wider-sample"))], card)
    other = load_shard(_shard(tmp_path / "s2b", 2, root="data/wider-sample", identity="cd"))
    with pytest.raises(UsageError, match="not mergeable with .*: dataset \\(the image identifiers or ground truth of "
                                         "the selection before --shard\\) differs"):
        check_mergeable([s1, other], card)


def test_out_may_not_be_one_of_the_runs_being_merged(tmp_path):
    s1, s2 = _shard(tmp_path / "s1", 1), _shard(tmp_path / "s2", 2)
    before = (s1 / RECORDS).read_bytes()
    r = CliRunner().invoke(app, ["merge", str(s1), str(s2), "--out", str(tmp_path / "." / "s1")])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (f"ssh-toolkit: error: {tmp_path / 's1'}: is one of the run folders being merged; "
                                f"give --out another folder")
    assert (s1 / RECORDS).read_bytes() == before
