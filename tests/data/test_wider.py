"""WIDER FACE reader: annotation parsing (spec §1.2), layout checks, image checks and reading, selection."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssh_toolkit.data.wider import (
    ATTRIBUTE_NAMES,
    annotation_file,
    images_dir,
    open_wider,
    parse_annotations,
    parse_shard,
    read_image,
)
from ssh_toolkit.errors import InputDataError, UsageError

GOOD = """\
0--Parade/0_Parade_marchingband_1_465.jpg
3
345 211 4 4 2 0 0 0 0 0 
331 126 3 3 0 0 0 1 0 0 
10 20 0 7 2 0 0 1 0 0 

1--Handshaking/1_Handshaking_1_1.jpg
0
0 0 0 0 0 0 0 0 0 0 
   1--Handshaking/1_Handshaking_1_2.jpg   
1
1.5 2.5 100 64
"""


def write(tmp_path: Path, text: str, name: str = "gt.txt") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode())
    return p


def test_parse_good_file(tmp_path):
    images = parse_annotations(write(tmp_path, GOOD))
    assert [im.identifier for im in images] == [
        "0--Parade/0_Parade_marchingband_1_465.jpg",
        "1--Handshaking/1_Handshaking_1_1.jpg",
        "1--Handshaking/1_Handshaking_1_2.jpg",  # stripped
    ]
    a, b, c = images
    # x1 = x, y1 = y, x2 = x + w, y2 = y + h; no -1
    assert a.boxes.dtype == np.float64
    np.testing.assert_array_equal(a.boxes, [[345, 211, 349, 215], [331, 126, 334, 129], [10, 20, 10, 27]])
    # invalid=1 and zero-size boxes are kept, attributes recorded
    invalid = ATTRIBUTE_NAMES.index("invalid")
    assert a.attributes[:, invalid].tolist() == [0, 1, 1]
    assert a.attributes[0].tolist() == [2, 0, 0, 0, 0, 0]
    # count 0: no boxes (the dummy line is not a box), the image stays
    assert len(b) == 0 and b.boxes.shape == (0, 4) and b.attributes.shape == (0, 6)
    # a 4-column box line: floats kept, attributes -1
    np.testing.assert_array_equal(c.boxes, [[1.5, 2.5, 101.5, 66.5]])
    assert c.attributes.tolist() == [[-1] * 6]
    assert (a.line, b.line, c.line) == (1, 7, 10)
    assert a.event == "0--Parade" and c.event == "1--Handshaking"
    gt = a.ground_truth()
    assert len(gt) == 3 and not gt.difficult.any()
    with pytest.raises(ValueError):
        a.boxes[0, 0] = 1  # read-only


def test_crlf_and_blank_lines(tmp_path):
    text = "\r\n\r\n" + GOOD.replace("\n", "\r\n") + "\r\n  \r\n"
    images = parse_annotations(write(tmp_path, text))
    assert [len(im) for im in images] == [3, 0, 1]
    assert images[0].line == 3


def test_count_zero_last_image_without_dummy(tmp_path):
    images = parse_annotations(write(tmp_path, "a/x.jpg\n1\n1 2 3 4\nb/y.jpg\n0\n"))
    assert [len(im) for im in images] == [1, 0]


def test_count_zero_followed_directly_by_next_image(tmp_path):
    images = parse_annotations(write(tmp_path, "a/x.jpg\n0\nb/y.jpg\n1\n1 2 3 4\n"))
    assert [len(im) for im in images] == [0, 1]


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("a/x.jpg\n2.0\n1 2 3 4\n1 2 3 4\n", 2, "expected the face count of a/x.jpg (an integer), got '2.0'"),
        ("a/x.jpg\nb/y.jpg\n0\n", 2, "expected the face count of a/x.jpg (an integer), got 'b/y.jpg'"),
        ("a/x.jpg\n-1\n", 2, "expected a face count >= 0"),
        ("a/x.jpg\n", 1, "expected the face count of a/x.jpg on the next line, got end of file"),
        ("a/x.jpg\n3\n1 2 3 4\n\n1 2 3 4\nb/y.jpg\n0\n", 6,
         "expected 3 box lines for a/x.jpg (count at line 2), found only 2 before the next image"),
        ("a/x.jpg\n3\n1 2 3 4\n1 2 3 4\n", 4,
         "expected 3 box lines for a/x.jpg (count at line 2), found only 2 before the end of file"),
        ("a/x.jpg\n2\n1 2 3 4\n1 2 3\n", 4, "at least 4 numbers, got '1 2 3'"),
        ("a/x.jpg\n1\n1 2 three 4\n", 3, "expected 4 numbers 'x y w h'"),
        ("a/x.jpg\n1\n1 2 -3 4 0 0 0 0 0 0\n", 3, "expected a box width and height >= 0, got w=-3 h=4"),
        ("a/x.jpg\n1\n1 2 3 -4\n", 3, "w=3 h=-4"),
        ("a/x.jpg\n1\n1 2 nan 4\n", 3, "expected finite numbers"),
        ("a/x.jpg\n1\n1 2 3 4\n5 6 7 8\nb/y.jpg\n0\n", 4,
         "expected an image path (a line containing '.jpg') after the boxes of a/x.jpg, got '5 6 7 8'"),
        ("\n\nheader\na/x.jpg\n0\n", 3, "expected an image path (a line containing '.jpg'), got 'header'"),
        ("a/x.jpg\n0\nb/y.jpg\n0\na/x.jpg\n0\n", 5, "image a/x.jpg is listed twice (first at line 1)"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, text, line, fragment):
    path = write(tmp_path, text)
    with pytest.raises(InputDataError) as err:
        parse_annotations(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert fragment in msg, msg
    assert "\n" not in msg


def test_empty_and_missing_annotation_files(tmp_path):
    with pytest.raises(InputDataError, match="no image entries"):
        parse_annotations(write(tmp_path, "\n \n"))
    with pytest.raises(InputDataError, match="annotation file not found"):
        parse_annotations(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a/\xff.jpg\n0\n")
    with pytest.raises(InputDataError, match=r"bad.txt:1: not UTF-8 text \(byte 0xff at column 3"):
        parse_annotations(bad)


# ------------------------------------------------------------------------------------------- dataset on disk

def make_root(tmp_path: Path, n: int = 6, events=("0--Parade", "1--Handshaking")) -> Path:
    """n images alternating between events, each 40x30 with one face; returns the data root."""
    root = tmp_path / "wider"
    lines = []
    for i in range(n):
        ident = f"{events[i % len(events)]}/img_{i}.jpg"
        p = images_dir(root) / ident
        p.parent.mkdir(parents=True, exist_ok=True)
        img = np.full((30, 40, 3), i * 10, np.uint8)
        assert cv2.imwrite(str(p), img)
        lines += [ident, "1", f"{i} 1 5 6 0 0 0 0 0 0 "]
    ann = annotation_file(root)
    ann.parent.mkdir(parents=True)
    ann.write_text("\n".join(lines) + "\n")
    return root


def test_open_wider_layout(tmp_path):
    root = make_root(tmp_path)
    ds = open_wider(root)
    assert len(ds) == 6 and ds.split == "val" and ds.selection == "all"
    assert ds.images_dir == root / "WIDER_val" / "images"
    assert ds.annotation_file == root / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    first = ds.images[0]
    assert ds.image_path(first) == root / "WIDER_val/images/0--Parade/img_0.jpg"
    assert ds.image_path("1--Handshaking/img_1.jpg") == root / "WIDER_val/images/1--Handshaking/img_1.jpg"
    assert ds.get("1--Handshaking/img_1.jpg") is ds.images[1]
    with pytest.raises(InputDataError, match="not an image of"):
        ds.get("nope.jpg")
    img = ds.read(first)
    assert img.dtype == np.uint8 and img.shape == (30, 40, 3)
    present, missing = ds.check_images()
    assert len(present) == 6 and missing == ()


def test_open_wider_missing_parts(tmp_path):
    with pytest.raises(InputDataError, match="data root not found"):
        open_wider(tmp_path / "absent")
    root = make_root(tmp_path)
    ann = annotation_file(root)
    ann.rename(ann.with_suffix(".bak"))
    with pytest.raises(InputDataError) as err:
        open_wider(root)
    assert str(err.value).startswith(f"{ann}: annotation file not found")
    ann.with_suffix(".bak").rename(ann)
    (root / "WIDER_val").rename(root / "elsewhere")
    with pytest.raises(InputDataError) as err:
        open_wider(root)
    assert str(err.value).startswith(f"{images_dir(root)}: image folder not found")
    with pytest.raises(UsageError, match="split must be one of"):
        open_wider(root, split="test")


def test_check_images_lists_missing_and_unreadable(tmp_path):
    root = make_root(tmp_path, n=10)
    ds = open_wider(root)
    gone = [ds.images[i] for i in (1, 3, 4, 5, 6, 7, 8)]
    for im in gone[:-1]:
        ds.image_path(im).unlink()
    ds.image_path(gone[-1]).write_bytes(b"")  # empty file: unreadable
    with pytest.raises(InputDataError) as err:
        ds.check_images()
    msg = str(err.value)
    assert msg.startswith(f"{ds.images_dir}: 7 of 10 images missing or unreadable: ")
    assert ", ".join(im.identifier for im in gone[:5]) in msg
    assert "and 2 more" in msg
    present, missing = ds.check_images(skip_missing=True)
    assert [im.identifier for im in missing] == [im.identifier for im in gone]
    assert [im.identifier for im in present] == [ds.images[i].identifier for i in (0, 2, 9)]


def test_read_image_corrupt_and_missing(tmp_path):
    bad = tmp_path / "garbage.jpg"
    bad.write_bytes(os.urandom(256))
    with pytest.raises(InputDataError) as err:
        read_image(bad)
    assert str(err.value) == f"{bad}: cannot decode image (corrupt or not an image)"
    with pytest.raises(InputDataError, match="image file not found"):
        read_image(tmp_path / "absent.jpg")


def test_read_image_grayscale_becomes_bgr(tmp_path):
    p = tmp_path / "gray.png"
    cv2.imwrite(str(p), np.arange(12, dtype=np.uint8).reshape(3, 4))
    img = read_image(p)
    assert img.shape == (3, 4, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 2]).all()


# -------------------------------------------------------------------------------------------------- selection

def ids(ds):
    return [im.identifier for im in ds]


def test_select_limit_shard_subset(tmp_path):
    ds = open_wider(make_root(tmp_path, n=7))
    all_ids = ids(ds)
    assert ids(ds.select(limit=3)) == all_ids[:3]
    assert ids(ds.select(limit=100)) == all_ids
    # shard K/N: positions p with p % N == K - 1; shards are disjoint and cover everything
    assert ids(ds.select(shard=(1, 3))) == [all_ids[i] for i in (0, 3, 6)]
    assert ids(ds.select(shard=(3, 3))) == [all_ids[i] for i in (2, 5)]
    union = sorted(i for k in (1, 2, 3) for i in ids(ds.select(shard=(k, 3))))
    assert union == sorted(all_ids)
    # subset by event or identifier, dataset order kept; then shard over the subset, then limit
    parade = ids(ds.select(subset=["0--Parade"]))
    assert parade == [i for i in all_ids if i.startswith("0--Parade/")]
    assert ids(ds.select(subset=[all_ids[5], all_ids[0]])) == [all_ids[0], all_ids[5]]
    assert ids(ds.select(subset="1--Handshaking")) == [i for i in all_ids if i.startswith("1--")]
    both = ds.select(subset=["0--Parade"], shard=(2, 2), limit=1)
    assert ids(both) == [parade[1]]
    assert both.selection == "subset of 1, shard 2/2, limit 1"
    assert ds.select(limit=2).select(shard=(1, 2)).selection == "limit 2, shard 1/2"
    # the original is untouched
    assert ids(ds) == all_ids and ds.selection == "all"


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"limit": 0}, "limit must be a positive integer"),
        ({"shard": (0, 2)}, "1 <= K <= N"),
        ({"shard": (3, 2)}, "1 <= K <= N"),
        ({"subset": ["9--Nothing"]}, "'9--Nothing' is neither an image identifier nor an event"),
        ({"shard": (7, 8), "limit": 1}, "leaves no image"),
    ],
)
def test_select_errors(tmp_path, kwargs, fragment):
    ds = open_wider(make_root(tmp_path, n=4))
    with pytest.raises(UsageError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        ds.select(**kwargs)


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("2", "a/b", "0/3", "5/4", "1/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)


# ---------------------------------------------------------------- odd encodings (issue 7, defect 5)

def _boxes(images):
    return [(im.identifier, im.boxes.tolist(), im.attributes.tolist(), im.line) for im in images]


def test_utf8_bom_is_stripped_same_images_and_boxes(tmp_path, sample_root):
    """A BOM written by a Windows editor must not glue itself to the first identifier (or shift the mAP)."""
    plain = annotation_file(sample_root).read_bytes()
    with_bom = tmp_path / "bom.txt"
    with_bom.write_bytes(b"\xef\xbb\xbf" + plain)
    expected = _boxes(parse_annotations(annotation_file(sample_root)))
    assert _boxes(parse_annotations(with_bom)) == expected
    assert expected[0][0] == "0--Parade/0_Parade_sample_1.jpg"

    root = tmp_path / "copy"
    shutil.copytree(sample_root, root)
    annotation_file(root).write_bytes(b"\xef\xbb\xbf" + plain)
    ds = open_wider(root)
    assert _boxes(ds.images) == expected
    present, missing = ds.check_images()
    assert not missing and len(present) == len(expected)


@pytest.mark.parametrize("encode", [
    lambda t: t.replace("\n", "\r\n").encode(),                       # Windows line ends
    lambda t: t.replace("\n", "\r").encode(),                         # classic Mac line ends
    lambda t: "\ufeff".encode("utf-8") + t.replace("\n", "\r\n").encode(),  # BOM + CRLF
    lambda t: t.encode("utf-16"),                                     # "Unicode" from Notepad: UTF-16 with BOM
    lambda t: b"\xfe\xff" + t.encode("utf-16-be"),                     # UTF-16 big-endian with BOM
])
def test_other_encodings_read_the_same(tmp_path, encode):
    expected = _boxes(parse_annotations(write(tmp_path, GOOD)))
    path = tmp_path / "odd.txt"
    path.write_bytes(encode(GOOD))
    assert _boxes(parse_annotations(path)) == expected


def test_latin1_file_name_is_a_line_numbered_error(tmp_path):
    text = GOOD.replace("1--Handshaking/1_Handshaking_1_2.jpg", "1--Handshaking/1_Poign\xe9e.jpg")
    path = tmp_path / "latin1.txt"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(InputDataError) as err:
        parse_annotations(path)
    msg = str(err.value)
    assert msg == (f"{path}:10: not UTF-8 text (byte 0xe9 at column 26 cannot be decoded); save the annotation "
                   f"file as UTF-8")


def test_nul_bytes_are_a_line_numbered_error(tmp_path):
    with pytest.raises(InputDataError, match=r"gt.txt:3: NUL character in the line \(a binary file"):
        parse_annotations(write(tmp_path, "a/x.jpg\n1\n1 2 3 4\x00\n"))


# ------------------------------------------------------- identifiers that leave the images folder (defect 11)

@pytest.mark.parametrize("identifier", [
    "../../x.jpg",
    "0--Parade/../../../x.jpg",
    "..",
    "/etc/x.jpg",
    "//server/share/x.jpg",
    "..\\..\\x.jpg",
    "0--Parade\\..\\..\\x.jpg",
    "\\x.jpg",
    "C:\\faces\\x.jpg",
    "c:x.jpg",
])
def test_identifier_leaving_the_images_folder_is_refused(tmp_path, identifier):
    path = write(tmp_path, f"a/ok.jpg\n0\n{identifier if identifier.endswith('.jpg') else identifier + '/y.jpg'}"
                           f"\n1\n1 2 3 4\n")
    with pytest.raises(InputDataError) as err:
        parse_annotations(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}:3: image path ") and "leaves the images folder" in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("identifier", ["a/./x.jpg", "a/x..y.jpg", "..a/x.jpg", "a/...jpg", "a b/c d.jpg"])
def test_identifiers_that_stay_inside_are_kept(tmp_path, identifier):
    assert parse_annotations(write(tmp_path, f"{identifier}\n0\n"))[0].identifier == identifier


def test_evaluate_refuses_an_identifier_leaving_the_images_folder(tmp_path, sample_root, card):
    """Through the CLI: the file outside the images folder exists, and must be neither read nor scored."""
    from typer.testing import CliRunner

    from ssh_toolkit.cli import app
    from ssh_toolkit.standins.toy import synthesize_toy
    from ssh_toolkit.workspace import Workspace

    root = tmp_path / "D"
    shutil.copytree(sample_root, root)
    first = next(p for p in sorted(images_dir(root).rglob("*.jpg")))
    shutil.copy(first, root / "x.jpg")  # WIDER_val/images/../../x.jpg
    ann = annotation_file(root)
    lines = ann.read_text().splitlines()
    lines[0] = "../../x.jpg"
    ann.write_text("\n".join(lines) + "\n")
    ws = Workspace(tmp_path / "ws")
    synthesize_toy(card, ws.checkpoint_dir("toy"), seed=0)
    r = CliRunner().invoke(app, ["evaluate", "-w", str(ws.root), "--weights", "toy", "--data-root", str(root),
                                 "--limit", "1", "--model", "mxnet", "--report-dir", str(tmp_path / "run")])
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith(f"ssh-toolkit: error: {ann}:1: image path '../../x.jpg' leaves the images folder")
    assert "Traceback" not in r.output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # a subprocess (a crash must not take pytest down)
def test_read_image_of_a_file_whose_name_is_not_utf8(tmp_path):
    """OpenCV's imread crashes the process (SIGSEGV) on a str path holding surrogate escapes (a name with bytes
    that are not UTF-8): such a file is read by its bytes instead, with the same pixels. Run in a subprocess, so a
    crash fails this test instead of killing pytest."""
    import subprocess
    import sys

    img = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    ok = tmp_path / "plain.png"
    cv2.imwrite(str(ok), img)
    odd = os.fsencode(tmp_path) + b"/caf\xe9 \xff.png"
    shutil.copy(ok, odd)
    code = ("import os, sys, numpy as np\nfrom ssh_toolkit.data.wider import read_image\n"
            f"a = read_image(os.fsdecode({odd!r}))\nb = read_image({str(ok)!r})\n"
            "sys.exit(0 if np.array_equal(a, b) else 5)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
