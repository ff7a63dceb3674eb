"""WIDER FACE on disk: the annotation file, the image list and the image reader.

Layout under a data root (the official archives unpacked side by side)::

    <root>/WIDER_val/images/<event>/<name>.jpg
    <root>/wider_face_split/wider_face_val_bbx_gt.txt

The annotation file repeats, for every image::

    0--Parade/0_Parade_marchingband_1_465.jpg   <- image line: contains ".jpg"; the identifier
    2                                           <- number of faces
    345 211 4 4 2 0 0 0 0 0                     <- x y w h blur expression illumination invalid occlusion pose
    331 126 3 3 0 0 0 1 0 0

An image with no faces has count ``0`` followed by one dummy line ``0 0 0 0 0 0 0 0 0 0``.

Conversion follows the Accuracy Checker's ``wider`` converter (spec §1.2): blank lines are dropped, lines are
stripped, dataset order is file order, boxes become ``x1 = x, y1 = y, x2 = x + w, y2 = y + h`` (no -1), and
*every* box is kept, ``invalid=1`` and zero-size ones included. Images with no faces stay in the dataset.
The reader is stricter than the converter in one way: a malformed file (bad count, missing or short box
lines, negative sizes, stray lines, an image listed twice, an identifier that leaves the images folder such as
``../../x.jpg``, ``/abs/x.jpg`` or ``..\\x.jpg``) is an :class:`InputDataError` naming the file and line,
instead of a crash, a silently shifted parse or a file read from elsewhere. Fields may be separated by any
whitespace. The file is UTF-8 (a leading byte order mark is dropped; UTF-16 with its byte order mark is read
too) with LF, CRLF or CR line ends; bytes that are not UTF-8 are an error naming the line and column.
"""

from __future__ import annotations

import codecs
import math
import os
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from ..errors import InputDataError, UsageError
from ..model.detections import GroundTruth

SPLITS = ("train", "val")
ATTRIBUTE_NAMES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
MISSING_ATTRIBUTE = -1  # attribute value when a box line has fewer than 10 columns or a non-integer one
_SHOW_MISSING = 5  # how many missing images an error message names


def images_dir(root: str | Path, split: str = "val") -> Path:
    return Path(root) / f"WIDER_{split}" / "images"


def annotation_file(root: str | Path, split: str = "val") -> Path:
    return Path(root) / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class WiderImage:
    """One annotated image.

    identifier  path relative to ``WIDER_<split>/images``, as written in the annotation file
    boxes       (G, 4) float64  x1, y1, x2, y2 with x2 = x + w (read-only)
    attributes  (G, 6) int16    the columns of :data:`ATTRIBUTE_NAMES`; -1 where the file has none (read-only)
    line        1-based line of the identifier in the annotation file
    """

    identifier: str
    boxes: np.ndarray
    attributes: np.ndarray
    line: int = 0

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4 or self.boxes.dtype != np.float64:
            raise ValueError(f"WiderImage.boxes must be float64 (G, 4), "
                             f"got {self.boxes.dtype} {self.boxes.shape}")
        if self.attributes.shape != (len(self.boxes), len(ATTRIBUTE_NAMES)):
            raise ValueError(f"WiderImage.attributes must be ({len(self.boxes)}, {len(ATTRIBUTE_NAMES)}), "
                             f"got {self.attributes.shape}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def event(self) -> str:
        """The event folder, e.g. ``0--Parade`` ('' when the identifier has no folder)."""
        return self.identifier.rpartition("/")[0]

    def ground_truth(self) -> GroundTruth:
        """All boxes, none difficult yet: the protocol's clip/filter step marks them (spec §4)."""
        return GroundTruth.from_boxes(self.boxes)


def parse_annotations(path: str | Path) -> list[WiderImage]:
    """Read a ``wider_face_<split>_bbx_gt.txt`` file into images in file order (spec §1.2).

    Raises InputDataError ``<path>:<line>: <what was expected>`` for a malformed file.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputDataError(f"{path}: annotation file not found") from None
    except OSError as e:
        raise InputDataError(f"{path}: cannot read annotation file ({e.strerror or e})") from None

    def fail(line: int, message: str) -> InputDataError:
        return InputDataError(f"{path}:{line}: {message}")

    # (1-based line number, stripped text) of every non-blank line.
    lines = [(n, s) for n, raw in enumerate(_decode_lines(data, fail), start=1) if (s := raw.strip())]

    images: list[WiderImage] = []
    first_seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        ln, identifier = lines[i]
        if ".jpg" not in identifier:
            after = f" after the boxes of {images[-1].identifier}" if images else ""
            raise fail(ln, f"expected an image path (a line containing '.jpg'){after}, got {identifier!r}")
        if _leaves_folder(identifier):
            raise fail(ln, f"image path {identifier!r} leaves the images folder (an absolute path, a drive or "
                           f"a '..' component); identifiers are relative to WIDER_<split>/images")
        if identifier in first_seen:
            raise fail(ln, f"image {identifier} is listed twice (first at line {first_seen[identifier]})")
        first_seen[identifier] = ln
        if i + 1 >= len(lines):
            raise fail(ln, f"expected the face count of {identifier} on the next line, got end of file")
        cln, count_text = lines[i + 1]
        try:
            count = int(count_text)
        except ValueError:
            raise fail(cln, f"expected the face count of {identifier} (an integer), "
                            f"got {count_text!r}") from None
        if count < 0:
            raise fail(cln, f"expected a face count >= 0 for {identifier}, got {count}")

        box_lines = lines[i + 2:i + 2 + count]
        boxes = np.zeros((count, 4), np.float64)
        attributes = np.full((count, len(ATTRIBUTE_NAMES)), MISSING_ATTRIBUTE, np.int16)
        for k, (bln, box_text) in enumerate(box_lines):
            if ".jpg" in box_text:
                raise fail(bln, f"expected {count} box lines for {identifier} (count at line {cln}), "
                                f"found only {k} before the next image")
            boxes[k], attributes[k] = _parse_box(box_text, lambda msg, _l=bln: fail(_l, msg))
        if len(box_lines) < count:
            raise fail(lines[-1][0], f"expected {count} box lines for {identifier} (count at line {cln}), "
                                     f"found only {len(box_lines)} before the end of file")
        i += 2 + count
        if count == 0 and i < len(lines) and ".jpg" not in lines[i][1]:
            i += 1  # the dummy "0 0 0 0 0 0 0 0 0 0" line of an image without faces
        images.append(WiderImage(identifier, _readonly(boxes), _readonly(attributes), ln))

    if not images:
        raise InputDataError(f"{path}: no image entries (lines containing '.jpg')")
    return images


_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_LINE_ENDS = re.compile(r"\r\n|\r|\n")  # universal newlines, as Python's text mode (the converter) reads
_DRIVE = re.compile(r"^[A-Za-z]:")


def _decode_lines(data: bytes, fail) -> list[str]:
    """The file's lines: UTF-8 (or UTF-16 with its BOM), any BOM dropped, CRLF/CR/LF line ends.

    Text that is not UTF-8 (a latin-1 file name, say) is ``fail(line, ...)`` naming the line and column.
    """
    encoding = "utf-8"
    for bom, name in _BOMS:
        if data.startswith(bom):
            data, encoding = data[len(bom):], name
            break
    if encoding != "utf-8":
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError as e:
            line = data[:e.start].decode(encoding, "replace").count("\n") + 1
            raise fail(line, f"not valid {encoding.upper()} text (the file starts with a UTF-16 byte order "
                             f"mark); save the annotation file as UTF-8") from None
        return _split_lines(text, fail)
    try:
        return _split_lines(data.decode("utf-8"), fail)
    except UnicodeDecodeError as e:
        before = data[:e.start]
        raw_lines = _LINE_ENDS.split(before.decode("utf-8", "replace"))
        line, column = len(raw_lines), len(raw_lines[-1]) + 1
        raise fail(line, f"not UTF-8 text (byte 0x{data[e.start]:02x} at column {column} cannot be decoded); "
                         f"save the annotation file as UTF-8") from None


def _split_lines(text: str, fail) -> list[str]:
    lines = _LINE_ENDS.split(text)
    for n, line in enumerate(lines, start=1):
        if "\x00" in line:
            raise fail(n, "NUL character in the line (a binary file, or UTF-16 without a byte order mark?); "
                          "expected UTF-8 text")
    return lines


def _leaves_folder(identifier: str) -> bool:
    """True when the identifier, read with '/' or with '\\' as separator, is absolute, has a drive or a '..'."""
    if _DRIVE.match(identifier) or identifier.startswith(("/", "\\")):
        return True
    return ".." in re.split(r"[/\\]", identifier)


def _parse_box(text: str, fail) -> tuple[np.ndarray, np.ndarray]:
    fields = text.split()
    if len(fields) < 4:
        raise fail(f"expected a box line 'x y w h ...' with at least 4 numbers, got {text!r}")
    try:
        x, y, w, h = (float(v) for v in fields[:4])
    except ValueError:
        raise fail(f"expected 4 numbers 'x y w h' at the start of the box line, got {text!r}") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise fail(f"expected finite numbers in the box line, got {text!r}")
    if w < 0 or h < 0:
        raise fail(f"expected a box width and height >= 0, got w={fields[2]} h={fields[3]}")
    attrs = np.full(len(ATTRIBUTE_NAMES), MISSING_ATTRIBUTE, np.int16)
    for k, v in enumerate(fields[4:4 + len(ATTRIBUTE_NAMES)]):
        try:
            attrs[k] = int(v)
        except ValueError:
            pass  # the converter ignores attributes; so do we, beyond recording them when they are integers
    return np.array([x, y, x + w, y + h], np.float64), attrs


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with 1 <= K <= N (for command-line options)."""
    k, sep, n = text.partition("/")
    try:
        if not sep:
            raise ValueError
        shard = int(k), int(n)
    except ValueError:
        raise UsageError(f"shard must look like K/N (e.g. 2/4), got {text!r}") from None
    _check_shard(shard)
    return shard


def _check_shard(shard: tuple[int, int]) -> None:
    k, n = shard
    if not (isinstance(k, int) and isinstance(n, int) and n >= 1 and 1 <= k <= n):
        raise UsageError(f"shard K/N needs 1 <= K <= N, got {k}/{n}")


@dataclass(frozen=True, eq=False)
class WiderDataset:
    """The images of one split, in annotation-file order, possibly narrowed by :meth:`select`.

    ``selection`` says how it was narrowed ("all" when it was not); a narrowed dataset does not give the
    full-set mAP, so reports should print it.
    """

    root: Path
    split: str
    images: tuple[WiderImage, ...]
    selection: str = "all"

    @cached_property
    def _index(self) -> dict[str, WiderImage]:
        return {im.identifier: im for im in self.images}

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[WiderImage]:
        return iter(self.images)

    def get(self, identifier: str) -> WiderImage:
        """The image with this identifier; InputDataError if the dataset has none."""
        try:
            return self._index[identifier]
        except KeyError:
            raise InputDataError(f"{identifier}: not an image of {self.annotation_file}") from None

    @property
    def images_dir(self) -> Path:
        return images_dir(self.root, self.split)

    @property
    def annotation_file(self) -> Path:
        return annotation_file(self.root, self.split)

    @property
    def identifiers(self) -> tuple[str, ...]:
        return tuple(im.identifier for im in self.images)

    def image_path(self, item: WiderImage | str) -> Path:
        identifier = item.identifier if isinstance(item, WiderImage) else item
        return self.images_dir / identifier

    def read(self, item: WiderImage | str) -> np.ndarray:
        """The image as BGR uint8 HWC (see :func:`read_image`)."""
        return read_image(self.image_path(item))

    def check_images(self, skip_missing: bool = False
                     ) -> tuple[tuple[WiderImage, ...], tuple[WiderImage, ...]]:
        """Stat every image before any inference; return ``(present, missing)``.

        An image is missing when its path is not a readable, non-empty regular file. Unless ``skip_missing``,
        any missing image raises one InputDataError naming the first few and the count. Decoding errors are
        only found when an image is read (:func:`read_image`). Evaluating only the present images drops images
        from the protocol's dataset, so the result is no longer the full-set figure; use
        ``dataclasses.replace(ds, images=present, selection=...)`` to carry on with them.
        """
        present: list[WiderImage] = []
        missing: list[WiderImage] = []
        for im in self.images:
            (present if _readable_file(self.image_path(im)) else missing).append(im)
        if missing and not skip_missing:
            names = ", ".join(im.identifier for im in missing[:_SHOW_MISSING])
            more = f" and {len(missing) - _SHOW_MISSING} more" if len(missing) > _SHOW_MISSING else ""
            raise InputDataError(
                f"{self.images_dir}: {len(missing)} of {len(self.images)} images missing or unreadable: "
                f"{names}{more} (skipping them changes the evaluated set)")
        return tuple(present), tuple(missing)

    def select(self, limit: int | None = None, shard: tuple[int, int] | None = None,
               subset: Iterable[str] | None = None) -> "WiderDataset":
        """Narrow the dataset, keeping dataset order. Steps run in this order:

        1. ``subset``: keep images whose identifier, or whose event folder (``0--Parade``), is in the list.
           An entry matching nothing is a UsageError.
        2. ``shard=(K, N)``: keep the images at positions ``p`` (0-based, after step 1) with
           ``p % N == K - 1``. Shards 1/N .. N/N are disjoint and together give back every image.
        3. ``limit``: keep the first ``limit`` images.

        A selection that leaves no image is a UsageError.
        """
        images = list(self.images)
        steps = [] if self.selection == "all" else [self.selection]
        if subset is not None:
            wanted = [subset] if isinstance(subset, str) else list(subset)
            known = set(self._index) | {im.event for im in images}
            unknown = [s for s in wanted if s not in known]
            if unknown:
                raise UsageError(f"subset entry {unknown[0]!r} is neither an image identifier nor an event "
                                 f"of {self.annotation_file}")
            keep = set(wanted)
            images = [im for im in images if im.identifier in keep or im.event in keep]
            steps.append(f"subset of {len(wanted)}")
        if shard is not None:
            _check_shard(shard)
            k, n = shard
            images = images[k - 1::n]
            steps.append(f"shard {k}/{n}")
        if limit is not None:
            if not isinstance(limit, int) or limit < 1:
                raise UsageError(f"limit must be a positive integer, got {limit!r}")
            images = images[:limit]
            steps.append(f"limit {limit}")
        selection = ", ".join(steps) or "all"
        if not images:
            raise UsageError(f"selection ({selection}) leaves no image of {self.annotation_file}")
        return replace(self, images=tuple(images), selection=selection)


def _readable_file(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    return path.is_file() and st.st_size > 0 and os.access(path, os.R_OK)


def open_wider(data_root: str | Path, split: str = "val") -> WiderDataset:
    """Check the layout under ``data_root`` and read the annotations; images are not touched here."""
    if split not in SPLITS:
        raise UsageError(f"WIDER FACE split must be one of {SPLITS}, got {split!r}")
    root = Path(data_root)
    if not root.is_dir():
        raise InputDataError(f"{root}: WIDER FACE data root not found")
    images = images_dir(root, split)
    if not images.is_dir():
        raise InputDataError(f"{images}: image folder not found; expected "
                             f"{root}/WIDER_{split}/images/<event>/<name>.jpg")
    ann = annotation_file(root, split)
    if not ann.is_file():
        raise InputDataError(f"{ann}: annotation file not found; expected it under {root}/wider_face_split/")
    return WiderDataset(root, split, tuple(parse_annotations(ann)))


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 (H, W, 3) as the Accuracy Checker's ``opencv_imread`` reader gives it (spec §2.1)."""
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: image file not found")
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8: OpenCV's imread crashes (SIGSEGV) on such a str
        return decode_image(path.read_bytes(), path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputDataError(f"{path}: cannot decode image (corrupt or not an image)")
    return image


def decode_image(data: bytes, name: str | Path) -> np.ndarray:
    """:func:`read_image` for a file's bytes (shipped to a Dask worker); ``name`` names it in the error."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise InputDataError(f"{name}: cannot decode image (corrupt or not an image)")
    return image
