"""A small, deterministic, synthetic dataset in the WIDER FACE validation layout.

It lets the whole pipeline (read, detect, match, report) run without the 3.4 GB dataset. What it contains:

* ``WIDER_val/images/<event>/<name>.jpg`` and ``wider_face_split/wider_face_val_bbx_gt.txt`` exactly as the
  real archives lay them out (10-column box lines with a trailing space; a faceless image is written as count
  ``0`` plus the dummy line ``0 0 0 0 0 0 0 0 0 0``), and ``ssh_toolkit_sample.json`` saying it is synthetic.
* 14 images by default, of sizes 1024x768, 640x480, 768x1024, 1024x1365, 512x512 and 1280x720, in 7 event
  folders, with 40 faces 10 to 1180 px tall, 26 positive and 14 difficult under the protocol (spec §4): 11
  under 64 px, one from row 0 to 1180 (clipped to 1024 rows), and two wholly below row 1024 or right of
  column 1024 (clipped to nothing). Most positives are 64-400 px; one crosses row 1024 and one column 1024 and
  both stay positive after the clip; faces exactly 63 and 64 px tall sit on both sides of the height limit.
  Two images have no face. Face sizes and places vary with the seed within fixed ranges; these counts do not.

What a face looks like (the toy detector relies on this):
    faces are bright (~200-230) filled ellipses on a dark (~40-90) smooth textured background; the
    ground-truth box is the ellipse's bounding box: the ellipse covers exactly the pixel columns x .. x+w-1
    and rows y .. y+h-1 of its ``x y w h`` line. Faces 24 px and larger get two darker eyes and a mouth
    (~110). Faces never overlap or touch (at least :data:`FACE_GAP` px apart) and lie wholly inside the
    image. Images are gray (B = G = R on faces, a slight tint on the background). JPEG (quality
    :data:`JPEG_QUALITY`) softens edges by a pixel or two and may ring a few levels past the ranges.

The same seed gives byte-identical files (on the same OpenCV build).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import UsageError
from ..fileio import atomic_dir
from .wider import annotation_file, images_dir

BACKGROUND_LEVEL = (40, 90)  # background pixel values stay inside this range (all channels)
FACE_LEVEL = (200, 230)  # face skin pixel values stay inside this range (all channels)
FACE_MEAN = 215  # centre of the face shading
FEATURE_LEVEL = 110  # eyes and mouth, drawn on faces at least FEATURE_MIN_SIZE px wide and tall
FEATURE_MIN_SIZE = 24
FACE_GAP = 6  # minimum gap in pixels between two faces' boxes
PLACEMENT_LIMIT = 1024  # randomly placed faces stay inside columns/rows 0..1023 (the protocol's GT clip, spec
# §4.2), so which faces the clip touches is fixed by the templates, not by the seed
JPEG_QUALITY = 95
MANIFEST = "ssh_toolkit_sample.json"
SAMPLE_VERSION = 1  # bump when the generated content changes


@dataclass(frozen=True)
class _Template:
    event: str
    width: int
    height: int
    heights: tuple[tuple[int, int], ...] = ()  # (min, max) face height of each randomly placed face
    fixed: tuple[tuple[int, int, int, int], ...] = ()  # x, y, w, h of faces at fixed places


# One image per template, in this order (events grouped as in the real file). Beyond 14 images they repeat
# with new random draws.
_TEMPLATES = (
    _Template("0--Parade", 1024, 768, ((150, 220), (90, 130), (64, 90), (40, 60), (20, 30))),
    _Template("0--Parade", 640, 480),  # no face
    _Template("1--Handshaking", 768, 1024, ((250, 400), (100, 160), (64, 80))),
    # crosses row 1024: clipped by the protocol to 604 rows, still a positive
    _Template("1--Handshaking", 1024, 1365, ((100, 140), (30, 50)), ((180, 420, 560, 760),)),
    _Template("2--Demonstration", 512, 512, ((90, 120), (40, 60), (40, 60), (30, 45), (24, 36), (12, 20))),
    # the fixed face lies wholly right of column 1024: the clip leaves it empty (difficult)
    _Template("2--Demonstration", 1280, 720, ((200, 300), (120, 180), (70, 100), (64, 70)),
              ((1100, 300, 100, 130),)),
    _Template("3--Riot", 1024, 768, ((380, 480),)),
    _Template("3--Riot", 640, 480, ((64, 100), (64, 100), (50, 63))),
    # rows 0..1180: clipped to 1024 rows, which makes it difficult (height must be < 1024); the second face
    # lies wholly below row 1024, so the clip leaves it empty (difficult as well)
    _Template("4--Dancing", 1024, 1365, fixed=((100, 0, 820, 1180), (430, 1220, 92, 110))),
    _Template("4--Dancing", 768, 1024, ((300, 400), (150, 200))),
    # the fixed face crosses column 1024: clipped to 44 px wide, still a positive
    _Template("5--Car_Accident", 1280, 720, ((100, 150), (100, 150), (64, 90), (10, 20)),
              ((980, 200, 90, 120),)),
    _Template("5--Car_Accident", 512, 512, ((280, 340),)),
    _Template("6--Funeral", 1024, 768, ((180, 260), (120, 160), (64, 64), (63, 63))),  # the 64 px boundary
    _Template("6--Funeral", 640, 480),  # no face
)
DEFAULT_IMAGES = len(_TEMPLATES)


def make_sample(out_dir: str | Path, *, seed: int = 0, n_images: int = DEFAULT_IMAGES) -> Path:
    """Write the sample dataset under ``out_dir`` (replacing it atomically) and return ``out_dir``.

    ``open_wider(out_dir)`` reads it. Image ``i`` depends only on ``seed`` and ``i``.
    """
    if not isinstance(n_images, int) or n_images < 1:
        raise UsageError(f"n_images must be a positive integer, got {n_images!r}")
    out_dir = Path(out_dir)
    entries: list[tuple[str, np.ndarray]] = []
    with atomic_dir(out_dir, kind="dataset") as tmp:
        for i in range(n_images):
            template = _TEMPLATES[i % len(_TEMPLATES)]
            rng = np.random.default_rng([seed, i])
            image, boxes = _draw(template, rng)
            number, _, label = template.event.partition("--")
            identifier = f"{template.event}/{number}_{label}_sample_{i + 1}.jpg"
            path = images_dir(tmp) / identifier
            path.parent.mkdir(parents=True, exist_ok=True)
            # Encoded in memory (the same bytes cv2.imwrite writes), written by Python: a full disk is an OSError
            # naming the file, where cv2.imwrite only returns False.
            ok, jpeg = cv2.imencode(path.suffix, image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise RuntimeError(f"{path}: OpenCV could not encode the image")
            try:
                path.write_bytes(jpeg.tobytes())
            except OSError as e:
                e.filename = e.filename or str(path)  # write() names no file; atomic_dir maps it to the final path
                raise
            entries.append((identifier, boxes))
        ann = annotation_file(tmp)
        ann.parent.mkdir(parents=True)
        ann.write_text(_annotation_text(entries), encoding="utf-8")
        manifest = {"generator": "ssh_toolkit.sample", "version": SAMPLE_VERSION, "seed": seed,
                    "n_images": n_images, "n_faces": int(sum(len(b) for _, b in entries)), "synthetic": True}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return out_dir


def _annotation_text(entries: list[tuple[str, np.ndarray]]) -> str:
    out = []
    for identifier, boxes in entries:
        out += [identifier, str(len(boxes))]
        for x, y, w, h in boxes:
            blur = 2 if h < 64 else 0  # like WIDER: small faces are marked heavily blurred
            out.append(f"{x} {y} {w} {h} {blur} 0 0 0 0 0 ")
        if len(boxes) == 0:
            out.append("0 0 0 0 0 0 0 0 0 0 ")
    return "\n".join(out) + "\n"


def _draw(t: _Template, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One image and its faces as integer ``x y w h`` rows."""
    image = _background(t.width, t.height, rng)
    boxes = [tuple(b) for b in t.fixed]
    for lo, hi in sorted(t.heights, key=lambda r: -r[1]):  # largest first, so placement always finds room
        h = int(rng.integers(lo, hi + 1))
        w = max(1, int(round(h * rng.uniform(0.72, 0.88))))
        boxes.append(_place(w, h, min(t.width, PLACEMENT_LIMIT), min(t.height, PLACEMENT_LIMIT), boxes, rng))
    for box in boxes:
        _draw_face(image, box, rng)
    return image, np.array(boxes, np.int64).reshape(-1, 4)


def _place(w: int, h: int, width: int, height: int, taken: list[tuple[int, ...]],
           rng: np.random.Generator) -> tuple[int, int, int, int]:
    for _ in range(1000):
        x = int(rng.integers(0, width - w + 1))
        y = int(rng.integers(0, height - h + 1))
        if all(x + w + FACE_GAP <= bx or bx + bw + FACE_GAP <= x
               or y + h + FACE_GAP <= by or by + bh + FACE_GAP <= y for bx, by, bw, bh in taken):
            return x, y, w, h
    raise RuntimeError(f"no room for a {w}x{h} face in a {width}x{height} sample image")  # a template bug


def _background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = BACKGROUND_LEVEL
    coarse = rng.uniform(lo + 8, hi - 8, size=(height // 48 + 2, width // 48 + 2)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    smooth += rng.integers(-4, 5, size=(height, width), dtype=np.int16)  # grain
    tint = rng.uniform(-4, 4, size=3).astype(np.float32)
    return np.clip(np.rint(smooth[..., None] + tint), lo, hi).astype(np.uint8)


def _draw_face(image: np.ndarray, box: tuple[int, ...], rng: np.random.Generator) -> None:
    """Fill the ellipse inscribed in ``box``: pixel (r, c) is inside when its centre (c + .5, r + .5) is."""
    x, y, w, h = box
    u = (np.arange(w) + 0.5 - w / 2) / (w / 2)  # -1..1 across the box, at pixel centres
    v = (np.arange(h) + 0.5 - h / 2) / (h / 2)
    uu, vv = np.meshgrid(u, v)
    inside = uu ** 2 + vv ** 2 <= 1.0
    lo, hi = FACE_LEVEL
    # lit from the front, with grain
    skin = FACE_MEAN + 8 * (1 - uu ** 2 - vv ** 2) - 4 + rng.integers(-4, 5, size=(h, w))
    patch = np.clip(np.rint(skin), lo, hi)
    if w >= FEATURE_MIN_SIZE and h >= FEATURE_MIN_SIZE:
        features = (((uu + 0.35) / 0.14) ** 2 + ((vv + 0.2) / 0.09) ** 2 <= 1) \
            | (((uu - 0.35) / 0.14) ** 2 + ((vv + 0.2) / 0.09) ** 2 <= 1) \
            | ((uu / 0.3) ** 2 + ((vv - 0.45) / 0.08) ** 2 <= 1)
        patch[features] = FEATURE_LEVEL
    image[y:y + h, x:x + w][inside] = patch[inside].astype(np.uint8)[:, None]  # gray: same value in B, G, R
