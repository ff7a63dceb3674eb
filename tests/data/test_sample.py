"""The generated WIDER-layout sample dataset: layout, composition, face appearance, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ssh_toolkit.data.sample import (
    BACKGROUND_LEVEL,
    DEFAULT_IMAGES,
    FACE_LEVEL,
    MANIFEST,
    make_sample,
)
from ssh_toolkit.data.wider import annotation_file, images_dir, open_wider
from ssh_toolkit.errors import UsageError


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ds(sample_root):
    return open_wider(sample_root)


def test_layout(sample_root):
    assert images_dir(sample_root).is_dir()
    assert annotation_file(sample_root).is_file()
    manifest = json.loads((sample_root / MANIFEST).read_text())
    assert manifest["synthetic"] is True and manifest["seed"] == 0 and manifest["n_images"] == DEFAULT_IMAGES
    assert len(list(images_dir(sample_root).rglob("*.jpg"))) == DEFAULT_IMAGES
    # no temporary directories left beside the output
    assert [p.name for p in sample_root.parent.iterdir()] == [sample_root.name]


def test_reads_back(ds, sample_root):
    assert 12 <= len(ds) <= 16
    assert sorted(ds.identifiers) == sorted(
        p.relative_to(images_dir(sample_root)).as_posix() for p in images_dir(sample_root).rglob("*.jpg"))
    present, missing = ds.check_images()
    assert missing == ()
    sizes = set()
    for im in ds:
        img = ds.read(im)
        h, w = img.shape[:2]
        sizes.add((w, h))
        b = im.boxes
        # every face wholly inside its image, integral, with positive size
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert np.array_equal(b, np.round(b)) and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert {(1024, 768), (640, 480), (768, 1024), (1024, 1365), (512, 512), (1280, 720)} <= sizes
    assert len({im.event for im in ds}) >= 5


def test_composition(ds, sample_root):
    heights = np.concatenate([im.boxes[:, 3] - im.boxes[:, 1] for im in ds])
    assert sum(len(im) == 0 for im in ds) >= 1
    assert (heights < 64).sum() >= 5  # difficult under the protocol
    assert ((heights >= 64) & (heights <= 400)).sum() >= 15
    assert {63, 64} <= set(heights.astype(int).tolist())  # both sides of the height limit
    y2 = np.concatenate([im.boxes[:, 3] for im in ds])
    assert (y2 > 1024).sum() >= 2  # faces the protocol clips at row 1024
    # one stays a positive after the clip (64 <= 1024 - y1 < 1024), one becomes 1024 rows tall (difficult)
    clipped_heights = [1024 - y1 for im in ds for y1, y2_ in im.boxes[:, [1, 3]] if y2_ > 1024]
    assert any(64 <= h < 1024 for h in clipped_heights) and 1024 in clipped_heights
    assert any(y1 >= 1024 for im in ds for y1 in im.boxes[:, 1])  # wholly below: the clip leaves nothing
    assert any(x1 >= 1024 for im in ds for x1 in im.boxes[:, 0])  # wholly right of column 1024: likewise
    assert any(x1 < 1024 < x2 for im in ds for x1, x2 in im.boxes[:, [0, 2]])
    # a faceless image is written as count 0 plus the dummy line, like the real file
    text = annotation_file(sample_root).read_text()
    empty = next(im for im in ds if len(im) == 0).identifier
    assert f"{empty}\n0\n0 0 0 0 0 0 0 0 0 0 \n" in text
    # 10-column box lines
    first = next(im for im in ds if len(im))
    assert len(text.split(f"{first.identifier}\n")[1].splitlines()[1].split()) == 10


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_difficult_count_does_not_depend_on_the_seed(tmp_path, seed):
    ds = open_wider(make_sample(tmp_path / "s", seed=seed))
    b = np.concatenate([np.clip(np.rint(im.boxes), 0, 1024) for im in ds])  # the protocol's cast and clip
    h, w = b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]
    positive = (h >= 64) & (h < 1024) & (w > 0)
    assert (len(b), int(positive.sum())) == (40, 26)


def test_faces_are_bright_ellipses_filling_their_box(ds):
    """GT box = the ellipse's bounding box: bright inside up to the box edge, dark just outside."""
    face_lo, _ = FACE_LEVEL
    _, bg_hi = BACKGROUND_LEVEL
    checked = 0
    for im in ds:
        img = ds.read(im).astype(np.int32).mean(axis=2)
        H, W = img.shape
        for x1, y1, x2, y2 in im.boxes.astype(int):
            w, h = x2 - x1, y2 - y1
            if min(w, h) < 16:
                continue
            cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
            # cheek between the centre and the side: skin, not eye or mouth
            assert img[cy, x1 + w // 8: x1 + w // 4].mean() >= face_lo - 15
            # first and last row/column of the box at the ellipse's extreme points are face
            for r, c in ((y1 + 1, cx), (y2 - 2, cx), (cy, x1 + 1), (cy, x2 - 2)):
                assert img[r, c] >= face_lo - 40, (im.identifier, r, c, img[r, c])
            # three pixels outside the box at the same points is background (where inside the image)
            for r, c in ((y1 - 3, cx), (y2 + 2, cx), (cy, x1 - 3), (cy, x2 + 2)):
                if 0 <= r < H and 0 <= c < W:
                    assert img[r, c] <= bg_hi + 15, (im.identifier, r, c, img[r, c])
            # the corners of the box lie outside the ellipse
            assert img[y1 + 1, x1 + 1] <= bg_hi + 15
            checked += 1
    assert checked >= 20


def test_deterministic(sample_root, tmp_path):
    again = make_sample(tmp_path / "again", seed=0)
    assert again == tmp_path / "again"
    assert tree(again) == tree(sample_root)
    other = tree(make_sample(tmp_path / "other", seed=1, n_images=2))
    same_names = {k: v for k, v in tree(sample_root).items() if k in other}
    assert same_names.keys() == other.keys() - {MANIFEST} | {MANIFEST}
    assert all(other[k] != v for k, v in same_names.items())


def test_replaces_an_earlier_sample_and_cycles_templates(tmp_path):
    out = tmp_path / "data"
    make_sample(out, seed=1, n_images=2)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match=r"data: holds files ssh-toolkit did not write: notes.txt"):
        make_sample(out, seed=3, n_images=16)
    assert (out / "notes.txt").read_text() == "mine" and len(open_wider(out)) == 2
    (out / "notes.txt").unlink()
    make_sample(out, seed=3, n_images=16)  # only what the toolkit wrote: it is ours to replace
    ds = open_wider(out)
    assert len(ds) == 16 and len(set(ds.identifiers)) == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_bad_n_images(tmp_path):
    with pytest.raises(UsageError):
        make_sample(tmp_path / "x", n_images=0)
    assert not (tmp_path / "x").exists()
