"""Greedy matching of one image's predictions to its ground truth (spec §5.2). Pure numpy.

The predictions must be given in the order they take in the *global* score ranking (the order in which the
reference visits them); :class:`~ssh_toolkit.metric.average_precision.MapAccumulator` takes care of that.
Per prediction, with ``ov`` its metric IoU to every GT face:

* no GT at all -> FP;
* ``m`` = best IoU over non-difficult faces; if ``m < thr`` and there are difficult faces, ``m`` = best
  IoU over the difficult ones; ``m < thr`` -> FP;
* ``H`` = every face (difficult or not) with IoU exactly ``m``;
* no face of ``H`` difficult: TP and mark ``H`` used if none of ``H`` is used yet, else FP (no fall-back);
* some face of ``H`` difficult: FP if any of ``H`` is used already (else neither TP nor FP); mark ``H`` used.

Vectorised: the IoU matrix is computed once; rows with every IoU below the threshold are FPs at once, and
only the rest (a few predictions per face) go through the rule above. Where ``H`` is a single face that no
tied ``H`` touches (the normal case) the greedy state reduces to "first prediction to reach a face", found
with ``np.unique``. Ties between faces (duplicate GT boxes, tiny faces) and the predictions reaching those
faces take an exact sequential pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.overlap import metric_iou


@dataclass(frozen=True)
class ImageMatch:
    """Outcome per prediction, in the order given to :func:`match_image`.

    tp, fp (N,) bool: a prediction that matched an ignored face first is neither.
    """

    tp: np.ndarray
    fp: np.ndarray

    @property
    def ignored(self) -> np.ndarray:
        return ~(self.tp | self.fp)


def match_image(boxes: np.ndarray, gt_boxes: np.ndarray, gt_difficult: np.ndarray,
                overlap_threshold: float = 0.5, include_boundaries: bool = True) -> ImageMatch:
    """Match ``(N, 4)`` prediction boxes (ranking order, cast already) to ``(G, 4)`` GT boxes with
    ``(G,)`` difficult flags -> :class:`ImageMatch`."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    difficult = np.asarray(gt_difficult, bool).reshape(-1)
    n = len(boxes)
    tp = np.zeros(n, bool)
    fp = np.zeros(n, bool)
    if n == 0:
        return ImageMatch(tp, fp)
    if len(gt_boxes) == 0:
        fp[:] = True
        return ImageMatch(tp, fp)

    ov = metric_iou(boxes, gt_boxes, include_boundaries)
    # A row whose IoUs are all below the threshold is an FP whatever the difficult flags say; only the others
    # (a few per face) need the best-IoU rule. "Not below" keeps NaN rows: a NaN IoU (only from non-finite
    # boxes) passes the reference's threshold test and then counts as a TP that marks no face; the
    # sequential pass below reproduces that.
    cand = np.flatnonzero(~(ov.max(axis=1) < overlap_threshold))
    fp[:] = True
    if cand.size == 0:
        return ImageMatch(tp, fp)
    sub = ov[cand]
    m = np.full(cand.size, -np.inf)
    if (~difficult).any():
        m = sub[:, ~difficult].max(axis=1)
    if difficult.any():
        m = np.where(m < overlap_threshold, sub[:, difficult].max(axis=1), m)
    ok = ~(m < overlap_threshold)
    rows, m = cand[ok], m[ok]
    fp[rows] = False
    if rows.size == 0:
        return ImageMatch(tp, fp)

    hit = ov[rows] == m[:, None]  # (R, G): the faces tied at the best IoU (none for a NaN IoU)
    n_hit = hit.sum(axis=1)
    # Faces reached by a tie row, and every row reaching one of them, interact through the "used" state and
    # are replayed one by one below. Any other row reaches a single face no tie row touches: the first row (in
    # ranking order) to reach that face takes it -- TP for a positive face, neither for an ignored one -- and
    # every later row is an FP, in both branches of the rule.
    tied_faces = hit[n_hit != 1].any(axis=0)
    entangled = (n_hit != 1) | (hit & tied_faces).any(axis=1)
    simple = ~entangled
    if simple.any():
        face = hit[simple].argmax(axis=1)
        _, first = np.unique(face, return_index=True)
        is_first = np.zeros(face.size, bool)
        is_first[first] = True
        r = rows[simple]
        tp[r] = is_first & ~difficult[face]
        fp[r] = ~is_first

    used = np.zeros(len(gt_boxes), bool)
    for r, h in zip(rows[entangled], hit[entangled]):
        if not difficult[h].any():
            if used[h].any():
                fp[r] = True
            else:
                tp[r] = True
                used[h] = True
        else:
            if used[h].any():
                fp[r] = True
            used[h] = True
    return ImageMatch(tp, fp)
