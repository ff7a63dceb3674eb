"""Anchors of the SSH / RetinaFace family, in the protocol's "+1" pixel convention (spec §3.1).

Pure numpy. Base anchors come from the card (``card.anchors``); the anchor plane of an H x W feature map at
stride S places ``base[k] + (w*S, h*S, w*S, h*S)`` at every cell and is flattened in (h, w, k) order, the same
order the decoder uses for scores and deltas: ``flat_index = (h*W + w)*A + k``.

Example (the ssh-mxnet card)::

    >>> base_anchors_by_stride(card.anchors)[32]
    array([[-248., -248.,  263.,  263.],
           [-120., -120.,  135.,  135.]])
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..card import AnchorSpec


def _whctr(box: np.ndarray) -> tuple[float, float, float, float]:
    """Width, height and centre of an x1y1x2y2 box with inclusive pixel bounds (w = x2 - x1 + 1)."""
    w = box[2] - box[0] + 1
    h = box[3] - box[1] + 1
    return w, h, box[0] + 0.5 * (w - 1), box[1] + 0.5 * (h - 1)


def _boxes_around(ws: np.ndarray, hs: np.ndarray, cx: float, cy: float) -> np.ndarray:
    """(n, 4) boxes of widths ``ws`` and heights ``hs`` centred on (cx, cy), inclusive pixel bounds."""
    ws = np.asarray(ws, np.float64)
    hs = np.asarray(hs, np.float64)
    return np.stack([cx - 0.5 * (ws - 1), cy - 0.5 * (hs - 1), cx + 0.5 * (ws - 1), cy + 0.5 * (hs - 1)],
                    axis=1)


def generate_base_anchors(base_size: int, ratios: Sequence[float], scales: Sequence[float]) -> np.ndarray:
    """Base anchors ``(len(ratios)*len(scales), 4) float64`` around the reference box [0, 0, base-1, base-1].

    For each aspect ratio r (h/w), the reference area is kept: ``w = round(sqrt(area / r))``,
    ``h = round(w * r)`` (numpy rounding, half to even); then each size is multiplied by every scale, in the
    listed order. Rows are ordered ratio-major, scale-minor.
    """
    ref = np.array([0.0, 0.0, base_size - 1.0, base_size - 1.0])
    w, h, cx, cy = _whctr(ref)
    r = np.asarray(ratios, np.float64)
    ws = np.round(np.sqrt(w * h / r))
    hs = np.round(ws * r)
    per_ratio = _boxes_around(ws, hs, cx, cy)
    s = np.asarray(scales, np.float64)
    rows = []
    for box in per_ratio:
        bw, bh, bcx, bcy = _whctr(box)
        rows.append(_boxes_around(bw * s, bh * s, bcx, bcy))
    return np.concatenate(rows, axis=0)


def base_anchors_by_stride(spec: AnchorSpec) -> dict[int, np.ndarray]:
    """``{stride: (A, 4) float64}`` for every stride of the card's anchor spec."""
    return {int(stride): generate_base_anchors(spec.base_size, spec.ratios, scales)
            for stride, scales in spec.scales.items()}


def anchor_plane(height: int, width: int, stride: int, base: np.ndarray) -> np.ndarray:
    """All anchors of a ``height x width`` feature map -> ``(height*width*A, 4) float64``, (h, w, k) order."""
    base = np.asarray(base, np.float64).reshape(-1, 4)
    sx = np.arange(width, dtype=np.float64) * stride
    sy = np.arange(height, dtype=np.float64) * stride
    shift = np.zeros((height, width, 1, 4), np.float64)
    shift[..., 0] = shift[..., 2] = sx[None, :, None]
    shift[..., 1] = shift[..., 3] = sy[:, None, None]
    return (base[None, None, :, :] + shift).reshape(-1, 4)
