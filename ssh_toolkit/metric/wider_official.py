"""The official WIDER FACE evaluation (Easy / Medium / Hard AP), spec §8. A separately labelled metric.

**Not comparable with the Open Model Zoo mAP** (spec §5): the official tool normalises scores, thresholds them
on a 1000-step grid, skips images without ground truth, and defines the sets by difficulty lists, not by face
height.

Two halves:

* :func:`official_ap`, a pure numpy kernel over in-memory predictions and ground truth;
* :class:`OfficialGroundTruth`, the ground truth in memory; ``data.wider_official_gt`` reads it from the
  official ``.mat`` files (``eval_tools/ground_truth``)::

      wider_face_val.mat     event_list (E,1) cell of str; file_list (E,1) cell of (n,1) cells of image
                             names without ".jpg"; face_bbx_list (E,1) cell of (n,1) cells of (k,4) x y w h
      wider_easy_val.mat     gt_list (E,1) cell of (n,1) cells of (m,1) arrays: 1-based indices of the faces
      wider_medium_val.mat   that count in that setting (the others are ignored). Hard ⊇ Medium ⊇ Easy.
      wider_hard_val.mat

The kernel, per setting (all scores first min-max normalised over every prediction of every image, with the
running minimum starting at 1 and the maximum at 0, as the reference does):

1. Per image with at least one GT face *and* one prediction (other images are skipped; their listed faces
   still count): predictions in descending score order; IoU to every GT face in float32 with the +1
   convention, intersections counted only where ``iw > 0`` and ``ih > 0``. Each prediction looks at its single
   best face (first argmax over all faces, ignored ones included). If that IoU is >= 0.5 and the face is
   ignored, the prediction stops counting as a proposal (any number of them can). Every other prediction is a
   proposal: it recalls its face if that face is listed and not recalled yet; otherwise (no match, or the face
   is already recalled) it acts as a false positive.
2. For each of 1000 thresholds ``1 - (t + 1) / 1000``: the predictions with score >= threshold give the
   proposal count and the number of recalled faces; these are summed over images.
3. ``precision = recalled / proposals`` and ``recall = recalled / listed faces``; AP is the VOC all-point
   envelope (:func:`.average_precision.voc_ap`). Thresholds with no proposal at all have recall 0 and do not
   change AP (the reference divides 0 by 0 there).

Predictions enter as x1 y1 x2 y2 (the toolkit's convention) and are turned into the official text format's
``x y w h`` as ``w = x2 - x1``, ``h = y2 - y1``; the kernel then forms ``x + w`` as the official tool does.
Scores are used at full precision (the official tool reads whatever precision the text files hold). The IoU
is float32 as in the spec (the Cython ``box_overlaps`` of the Python port); the MATLAB tool uses double, which
can only differ for an IoU within float32 rounding of 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from ..errors import InputDataError
from ..model.detections import Detections
from .average_precision import voc_ap

LABEL = "WIDER FACE official AP (Easy/Medium/Hard; not comparable with the OMZ mAP)"
SETTINGS = ("easy", "medium", "hard")
IOU_THRESHOLD = 0.5
N_THRESHOLDS = 1000
NO_GROUND_TRUTH = -1.0  # the AP of a setting that lists no face at all

Prediction = Detections | tuple[np.ndarray, np.ndarray]  # boxes (N, 4) x1 y1 x2 y2, scores (N,)


def official_iou(pred_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> np.ndarray:
    """``(N, 4) x (G, 4) -> (N, G) float32`` IoU with the +1 pixel convention, every step in float32.

    ``iw = min(x2) - max(x1) + 1`` and likewise ``ih``; the pair overlaps only if both are > 0, else IoU 0.
    Union = prediction area + GT area - intersection. Example: ``[0, 0, 9, 9]`` vs ``[5, 0, 14, 9]`` gives
    50 / 150 = 0.33333334.
    """
    p = np.asarray(pred_xyxy, np.float32).reshape(-1, 4)
    g = np.asarray(gt_xyxy, np.float32).reshape(-1, 4)
    one = np.float32(1)
    iw = np.minimum(p[:, None, 2], g[None, :, 2]) - np.maximum(p[:, None, 0], g[None, :, 0]) + one
    ih = np.minimum(p[:, None, 3], g[None, :, 3]) - np.maximum(p[:, None, 1], g[None, :, 1]) + one
    inter = iw * ih
    area_p = (p[:, 2] - p[:, 0] + one) * (p[:, 3] - p[:, 1] + one)
    area_g = (g[:, 2] - g[:, 0] + one) * (g[:, 3] - g[:, 1] + one)
    union = area_p[:, None] + area_g[None, :] - inter
    overlap = (iw > 0) & (ih > 0)
    out = np.zeros(inter.shape, np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes behave as in C: inf / nan
        np.divide(inter, union, out=out, where=overlap)
    return out


def _as_arrays(identifier: str, pred: Prediction) -> tuple[np.ndarray, np.ndarray]:
    boxes, scores = (pred.boxes, pred.scores) if isinstance(pred, Detections) else pred
    boxes = np.asarray(boxes, np.float64)
    scores = np.asarray(scores, np.float64)
    if boxes.size == 0 and scores.size == 0:
        return np.zeros((0, 4)), np.zeros(0)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),):
        raise ValueError(f"predictions of {identifier!r}: boxes must be (N, 4) and scores (N,), "
                         f"got {boxes.shape} and {scores.shape}")
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise ValueError(f"predictions of {identifier!r}: boxes and scores must be finite")
    return boxes, scores


def _xyxy_via_xywh(boxes: np.ndarray) -> np.ndarray:
    """x1 y1 x2 y2 -> official x y w h -> x y x+w y+h, float64 (``x + (x2 - x1)`` may be an ulp off x2)."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def official_ap(predictions: Mapping[str, Prediction], gt_boxes_xywh: Mapping[str, np.ndarray],
                keep_lists: Mapping[str, Mapping[str, np.ndarray]], *, iou_threshold: float = IOU_THRESHOLD,
                n_thresholds: int = N_THRESHOLDS) -> dict[str, float]:
    """AP per setting, following the official WIDER FACE evaluation (see the module docstring).

    predictions    identifier -> ``(boxes (N, 4) x1 y1 x2 y2, scores (N,))`` or a :class:`Detections`. An
                   image of ``gt_boxes_xywh`` without an entry has no predictions; an entry for an image not
                   in ``gt_boxes_xywh`` is a ValueError.
    gt_boxes_xywh  identifier -> ``(G, 4)`` official ``x y w h`` boxes; defines the evaluated images.
    keep_lists     setting -> identifier -> **0-based** indices of the faces that count (``gt_list - 1``);
                   faces not listed are ignored; an image missing from a setting lists no face. Each index
                   counts once per occurrence in ``count_face``, as in the reference.
    Returns setting -> AP in ``keep_lists`` order; :data:`NO_GROUND_TRUTH` (-1.0) for a setting listing no
    face. All scores equal (so that min-max normalisation divides by zero) is an InputDataError.
    """
    preds = {}
    for identifier, pred in predictions.items():
        if identifier not in gt_boxes_xywh:
            raise ValueError(f"predictions given for {identifier!r}, which is not in the ground truth")
        preds[identifier] = _as_arrays(identifier, pred)
    for setting, lists in keep_lists.items():
        unknown = next((i for i in lists if i not in gt_boxes_xywh), None)
        if unknown is not None:
            raise ValueError(f"keep list {setting!r} names {unknown!r}, which is not in the ground truth")

    all_scores = [s for _, s in preds.values() if len(s)]
    lo = min([1.0] + [float(s.min()) for s in all_scores])
    hi = max([0.0] + [float(s.max()) for s in all_scores])
    if all_scores and hi == lo:
        n = sum(len(s) for s in all_scores)
        raise InputDataError(f"official WIDER evaluation: all {n} prediction scores equal {lo}; its min-max "
                             f"score normalisation needs at least two distinct values")
    thresholds = 1.0 - np.arange(1, n_thresholds + 1, dtype=np.float64) / n_thresholds

    proposals = {s: np.zeros(n_thresholds, np.float64) for s in keep_lists}
    recalled = {s: np.zeros(n_thresholds, np.float64) for s in keep_lists}
    count_face = {s: sum(np.asarray(k).size for k in lists.values()) for s, lists in keep_lists.items()}

    for identifier, gt in gt_boxes_xywh.items():
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        boxes, scores = preds.get(identifier, (np.zeros((0, 4)), np.zeros(0)))
        if len(gt) == 0 or len(boxes) == 0:
            continue
        norm = (scores - lo) / (hi - lo)
        order = np.argsort(-norm, kind="stable")  # the outcome does not depend on how ties are ordered
        norm = norm[order]
        gt_xyxy = np.concatenate([gt[:, :2], gt[:, :2] + gt[:, 2:]], axis=1)
        iou = official_iou(_xyxy_via_xywh(boxes[order]), gt_xyxy)
        best = iou.argmax(axis=1)
        matched = iou[np.arange(len(best)), best] >= iou_threshold
        # predictions with score >= threshold t are the first n_in[t] (scores are sorted descending)
        n_in = np.searchsorted(-norm, -thresholds, side="right")
        last = n_in - 1
        some = n_in > 0
        for setting, lists in keep_lists.items():
            idx = np.asarray(lists.get(identifier, ()), np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= len(gt)):
                raise ValueError(f"keep list {setting!r} of {identifier!r}: indices must be in "
                                 f"0..{len(gt) - 1}, got {idx.tolist()}")
            listed = np.zeros(len(gt), bool)
            listed[idx] = True
            is_proposal = ~(matched & ~listed[best])
            hits = np.flatnonzero(matched & listed[best])
            first_hits = hits[np.unique(best[hits], return_index=True)[1]]
            newly = np.zeros(len(best), np.int64)
            newly[first_hits] = 1
            proposals[setting][some] += np.cumsum(is_proposal)[last[some]]
            recalled[setting][some] += np.cumsum(newly)[last[some]]

    result = {}
    for setting in keep_lists:
        if count_face[setting] == 0:
            result[setting] = NO_GROUND_TRUTH
            continue
        prop, rec = proposals[setting], recalled[setting]
        precision = np.divide(rec, prop, out=np.zeros(n_thresholds), where=prop > 0)
        result[setting] = voc_ap(precision, rec / count_face[setting])
    return result


@dataclass(frozen=True, eq=False)
class OfficialGroundTruth:
    """The official ``.mat`` ground truth, keyed by dataset identifier ``<event>/<name>.jpg``.

    boxes_xywh  identifier -> (G, 4) float64 official x y w h, in file order
    keep        setting -> identifier -> (m,) int64 0-based indices of the faces that count in the setting
    source      the folder the files were read from (for messages)
    """

    boxes_xywh: Mapping[str, np.ndarray]
    keep: Mapping[str, Mapping[str, np.ndarray]]
    source: str | None = None

    def __len__(self) -> int:
        return len(self.boxes_xywh)

    def subset(self, identifiers: Iterable[str]) -> "OfficialGroundTruth":
        """Only these images (e.g. a dataset selection); an unknown identifier is an InputDataError."""
        ids = list(identifiers)
        unknown = [i for i in ids if i not in self.boxes_xywh]
        if unknown:
            raise InputDataError(f"{self.source or 'official ground truth'}: no image {unknown[0]!r} "
                                 f"({len(unknown)} of {len(ids)} identifiers unknown)")
        return OfficialGroundTruth({i: self.boxes_xywh[i] for i in ids},
                                   {s: {i: k[i] for i in ids} for s, k in self.keep.items()}, self.source)

    def evaluate(self, predictions: Mapping[str, Prediction]) -> dict[str, float]:
        return official_ap(predictions, self.boxes_xywh, self.keep)
