"""IoU in the two pixel conventions of the protocol (spec §3.4 and §5.1). One place per formula.

Both take x1 y1 x2 y2 boxes and the ``include_boundaries`` flag (``b = 1``: a box [x1, x2] spans
``x2 - x1 + 1`` pixels). They differ in where the +1 goes relative to the clamp at zero:

* :func:`nms_iou` (NMS, §3.4):     ``iw = max(0, min(x2) - max(x1) + b)``   -> disjoint boxes give 0.
* :func:`metric_iou` (mAP, §5.1):  ``iw = max(min(x2), max(x1)) - max(x1) + b`` -> disjoint boxes still
  intersect by at least ``b*b``: two 10x10 boxes apart on both axes give 1 / 199 = 0.005025.

A zero union gives IoU 0 in both.

Worked example (metric, b = 1)::

    >>> metric_iou(np.array([[0., 0, 99, 9]]), np.array([[50., 0, 149, 9]]))
    array([[0.33333333]])        # inter 50x10, union 1000 + 1000 - 500
"""

from __future__ import annotations

import numpy as np


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape, np.float64), where=den != 0)


def box_area(boxes: np.ndarray, include_boundaries: bool = True) -> np.ndarray:
    """``(..., 4) -> (...)``: ``(x2 - x1 + b) * (y2 - y1 + b)``, not clamped (inverted boxes: odd areas)."""
    b = 1 if include_boundaries else 0
    boxes = np.asarray(boxes)
    return (boxes[..., 2] - boxes[..., 0] + b) * (boxes[..., 3] - boxes[..., 1] + b)


def metric_iou(detections: np.ndarray, ground_truth: np.ndarray,
               include_boundaries: bool = True) -> np.ndarray:
    """Metric IoU matrix ``(N, 4) x (G, 4) -> (N, G) float64``: clamp the intersection first, then add +1.

    Evaluated as ``inter = (max(ix1, min(x2s)) - ix1 + b) * (...)``, ``union = area_p + area_g - inter`` and
    ``inter / union`` (0 where the union is 0), in float64, in that order of operations.
    """
    b = 1 if include_boundaries else 0
    p = np.asarray(detections, np.float64).reshape(-1, 4)
    g = np.asarray(ground_truth, np.float64).reshape(-1, 4)
    px1, py1, px2, py2 = (np.ascontiguousarray(p[:, i:i + 1]) for i in range(4))  # (N, 1)
    gx1, gy1, gx2, gy2 = (np.ascontiguousarray(g[:, i]) for i in range(4))  # (G,)
    ix1 = np.maximum(gx1, px1)
    iy1 = np.maximum(gy1, py1)
    iw = np.minimum(gx2, px2)  # the same operations as above, done in place on (N, G) buffers
    np.maximum(ix1, iw, out=iw)
    iw -= ix1
    iw += b
    ih = np.minimum(gy2, py2)
    np.maximum(iy1, ih, out=ih)
    ih -= iy1
    ih += b
    inter = iw
    inter *= ih
    union = (px2 - px1 + b) * (py2 - py1 + b) + (gx2 - gx1 + b) * (gy2 - gy1 + b)
    union -= inter
    return _safe_div(inter, union)


def nms_iou(box: np.ndarray, others: np.ndarray, include_boundaries: bool = True,
            box_area_: float | None = None, others_area: np.ndarray | None = None) -> np.ndarray:
    """NMS IoU of one box ``(4,)`` against ``(M, 4)`` boxes -> ``(M,) float64``: add +1, then clamp at 0.

    ``box_area_`` / ``others_area`` may pass precomputed :func:`box_area` values (same numbers, less work).
    """
    b = 1 if include_boundaries else 0
    box = np.asarray(box)
    others = np.asarray(others).reshape(-1, 4)
    iw = np.maximum(0.0, np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]) + b)
    ih = np.maximum(0.0, np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]) + b)
    inter = iw * ih
    a = box_area(box, include_boundaries) if box_area_ is None else box_area_
    oa = box_area(others, include_boundaries) if others_area is None else others_area
    return _safe_div(inter, a + oa - inter)
