"""The protocol's per-image postprocessing, in its fixed order (spec §4): cast -> clip -> filter. Pure numpy.

* cast (both sides): coordinates rounded with ``np.rint`` (half to even: 64.5 -> 64, 65.5 -> 66); scores
  untouched.
* clip (ground truth only): every coordinate clipped to ``[0, protocol.clip_annotation]`` (a fixed bound,
  not the image size). Predictions are never clipped.
* filter (ground truth only): nothing is removed; a face becomes *difficult* (ignored) unless
  ``lo <= y2 - y1 < hi`` (no +1, after rint and clip), and, with ``filter_empty``, also when
  ``x2 - x1 <= 0`` or ``y2 - y1 <= 0``. Predictions are never difficult.

Examples: a GT box 64 px tall stays a positive, 63 px is difficult, one clipped to 1024 px is difficult.
"""

from __future__ import annotations

import numpy as np

from ..card import Protocol
from ..model.detections import Detections, GroundTruth

_ROUND = {"nearest": np.rint, "nearest_to_zero": np.trunc, "lower": np.floor, "greater": np.ceil}


def cast_boxes(boxes: np.ndarray, round_policy: str = "nearest") -> np.ndarray:
    """``(N, 4) -> (N, 4) float64`` with integral values (``np.rint`` for the default ``nearest``)."""
    try:
        fn = _ROUND[round_policy]
    except KeyError:
        raise ValueError(f"unknown round_policy {round_policy!r}; expected one of {sorted(_ROUND)}") from None
    return fn(np.asarray(boxes, np.float64).reshape(-1, 4))


def clip_boxes(boxes: np.ndarray, size: float) -> np.ndarray:
    """Clip every coordinate to ``[0, size]`` on both axes (inclusive)."""
    return np.clip(np.asarray(boxes, np.float64).reshape(-1, 4), 0, size)


def difficult_mask(boxes: np.ndarray, height_range: tuple[float, float], filter_empty: bool) -> np.ndarray:
    """``(G, 4) -> (G,) bool``: outside ``lo <= y2 - y1 < hi`` (NaN heights too), or empty with
    ``filter_empty``. ``hi == 0`` means no upper bound."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    lo, hi = height_range
    h = boxes[:, 3] - boxes[:, 1]
    inside = (lo <= h) & (h < hi) if hi else (lo <= h)
    out = ~inside
    if filter_empty:
        out |= (boxes[:, 2] - boxes[:, 0] <= 0) | (h <= 0)
    return out


def prepare_ground_truth(boxes: np.ndarray | GroundTruth, protocol: Protocol) -> GroundTruth:
    """Raw ground truth (x1 y1 x2 y2, x2 = x + w) -> cast, clipped :class:`GroundTruth` with difficult flags.

    A :class:`GroundTruth` input keeps its own ``difficult`` flags, OR-ed with the protocol's (the reference
    appends to an existing difficult list in the same way). With ``protocol.ignore_difficult`` False no box is
    difficult.
    """
    if isinstance(boxes, GroundTruth):
        prior = boxes.difficult
        boxes = boxes.boxes
    else:
        prior = None
    b = cast_boxes(boxes, protocol.round_policy)
    b = clip_boxes(b, protocol.clip_annotation)
    diff = difficult_mask(b, protocol.height_range, protocol.filter_empty)
    if prior is not None:
        diff |= prior
    if not protocol.ignore_difficult:
        diff[:] = False
    return GroundTruth(b, diff)


def prepare_detections(dets: Detections, protocol: Protocol) -> Detections:
    """Detections -> coordinates cast with the protocol's rounding; scores and order unchanged."""
    return Detections(cast_boxes(dets.boxes, protocol.round_policy), dets.scores)
