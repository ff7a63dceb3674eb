"""Raw network outputs -> face detections in original-image pixels (spec §3). Pure numpy.

Per stride, in the card's stride order (32, 16, 8 for ssh-mxnet):

1. face scores = score channels ``A..2A-1`` laid out (h, w, k); deltas ``(dx, dy, dw, dh)`` per anchor, in
   the same order;
2. :func:`decode_deltas` on the anchor plane (+1 convention, ``exp`` in the deltas' dtype, no clipping);
3. :func:`nms` with the protocol's ``keep_top_k`` applied to the candidates *before* suppression;

then the kept boxes of all strides are concatenated (no NMS across strides, no score threshold) and divided by
``scale_x`` / ``scale_y`` (``640 / W`` and ``640 / H``). The output order (strides in protocol order, each in
NMS keep order) and dtypes (boxes float64, scores as the network gave them, float32 normally) reproduce the
Open Model Zoo Accuracy Checker bit for bit, tie order included.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..card import ModelCard
from ..errors import BackendError
from .anchors import anchor_plane, base_anchors_by_stride
from .detections import Detections
from .overlap import box_area, nms_iou
from .ranking import reference_argsort


def decode_deltas(anchors: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Apply ``(M, 4)`` deltas (dx, dy, dw, dh) to ``(M, 4)`` anchors -> ``(M, 4) float64`` boxes.

    ``w = x2 - x1 + 1``, centre ``x1 + 0.5*(w - 1)``; new centre ``dx*w + cx``, new width ``exp(dw)*w``; box
    ``centre -/+ 0.5*(width - 1)``. ``exp`` is evaluated in the deltas' own dtype (float32) and then promoted.
    """
    anchors = np.asarray(anchors, np.float64)
    deltas = np.asarray(deltas)
    if len(anchors) == 0:
        return np.zeros((0, 4), np.float64)
    w = anchors[:, 2] - anchors[:, 0] + 1.0
    h = anchors[:, 3] - anchors[:, 1] + 1.0
    cx = anchors[:, 0] + 0.5 * (w - 1.0)
    cy = anchors[:, 1] + 0.5 * (h - 1.0)
    pcx = deltas[:, 0] * w + cx
    pcy = deltas[:, 1] * h + cy
    pw = np.exp(deltas[:, 2]) * w
    ph = np.exp(deltas[:, 3]) * h
    out = np.empty((len(anchors), 4), np.float64)
    out[:, 0] = pcx - 0.5 * (pw - 1.0)
    out[:, 1] = pcy - 0.5 * (ph - 1.0)
    out[:, 2] = pcx + 0.5 * (pw - 1.0)
    out[:, 3] = pcy + 0.5 * (ph - 1.0)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, thr: float, keep_top_k: int | None = None,
        include_boundaries: bool = True) -> np.ndarray:
    """Greedy NMS -> indices of the kept boxes, in keep order (score descending).

    Candidates are ordered by ``np.argsort(scores)[::-1]`` (numpy's classic unstable sort, reversed: this
    fixes the order of equal scores; see :mod:`.ranking`) and truncated to ``keep_top_k`` *before* suppression. A candidate is
    suppressed when its :func:`~ssh_toolkit.metric.overlap.nms_iou` with a kept box is ``> thr``; exactly
    ``thr`` survives.
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    order = reference_argsort(scores)[::-1]
    if keep_top_k:
        order = order[:keep_top_k]
    areas = box_area(boxes, include_boundaries)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        ov = nms_iou(boxes[i], boxes[rest], include_boundaries, areas[i], areas[rest])
        order = rest[ov <= thr]
    return np.asarray(keep, np.int64)


def _chw(arr: np.ndarray, name: str, channels: int) -> np.ndarray:
    """The one image of a ``[1, C, H, W]`` (or ``[C, H, W]``) output, checked for ``C == channels``."""
    a = np.asarray(arr)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[0] != channels:
        raise BackendError(f"decode: output {name!r} has shape {tuple(np.shape(arr))}, "
                           f"expected [1, {channels}, H, W]")
    return a


def decode_stride(scores: np.ndarray, deltas: np.ndarray, stride: int, base: np.ndarray,
                  nms_threshold: float, keep_top_k: int | None, include_boundaries: bool,
                  names: tuple[str, str] = ("scores", "deltas")) -> tuple[np.ndarray, np.ndarray]:
    """One stride: ``[1, 2A, H, W]`` scores and ``[1, 4A, H, W]`` deltas -> kept ``(boxes (K, 4), scores
    (K,))``
    in network-input pixels, NMS keep order."""
    n_anchor = len(base)
    s = _chw(scores, names[0], 2 * n_anchor)
    d = _chw(deltas, names[1], 4 * n_anchor)
    if s.shape[1:] != d.shape[1:]:
        raise BackendError(f"decode: {names[0]!r} is {s.shape[1]}x{s.shape[2]} but {names[1]!r} is "
                           f"{d.shape[1]}x{d.shape[2]} at stride {stride}")
    height, width = d.shape[1:]
    face = s[n_anchor:].transpose(1, 2, 0).reshape(-1)
    dl = d.transpose(1, 2, 0).reshape(-1, 4)
    boxes = decode_deltas(anchor_plane(height, width, stride, base), dl)
    keep = nms(boxes, face, nms_threshold, keep_top_k, include_boundaries)
    return boxes[keep], face[keep]


def decode(raw: Mapping[str, np.ndarray], card: ModelCard, scale_x: float, scale_y: float) -> Detections:
    """Decode one image's raw outputs (keyed by canonical output name, see ``card.outputs``) ->
    :class:`Detections`.

    Feature sizes come from the tensors, so any input size works. ``scale_x = input_w / image_w`` and
    ``scale_y = input_h / image_h``; coordinates are divided by them (not multiplied by the inverse: the
    division is what the reference does, bit for bit). ``raw`` may also be a
    :class:`~ssh_toolkit.outputs.RawOutputs`.
    """
    arrays = getattr(raw, "arrays", raw)
    p = card.protocol
    bases = base_anchors_by_stride(card.anchors)
    all_boxes, all_scores = [], []
    for stride in card.strides:
        sname = card.output("scores", stride).name
        dname = card.output("deltas", stride).name
        for n in (sname, dname):
            if n not in arrays:
                raise BackendError(f"decode: output {n!r} missing; have {sorted(arrays)}")
        b, s = decode_stride(arrays[sname], arrays[dname], stride, bases[stride], p.nms_threshold,
                             p.keep_top_k, p.include_boundaries, (sname, dname))
        all_boxes.append(b)
        all_scores.append(s)
    boxes = np.concatenate(all_boxes, axis=0) if all_boxes else np.zeros((0, 4), np.float64)
    scores = np.concatenate(all_scores) if all_scores else np.zeros((0,), np.float32)
    out = np.empty_like(boxes)
    out[:, 0] = boxes[:, 0] / scale_x
    out[:, 1] = boxes[:, 1] / scale_y
    out[:, 2] = boxes[:, 2] / scale_x
    out[:, 3] = boxes[:, 3] / scale_y
    return Detections(out, scores)
