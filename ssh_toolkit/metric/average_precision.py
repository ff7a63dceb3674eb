"""Detection mAP under the Accuracy Checker protocol (spec §5): state first, then compute. Pure numpy.

Usage::

    acc = MapAccumulator(card.protocol)
    for sample in dataset:                                     # dataset order = update order
        acc.update(sample.id, detections, ground_truth)        # raw (un-rounded) inputs
    result = acc.compute()                                     # EvalResult; result.map_percent

``update`` applies the protocol's postprocessing itself (:mod:`.postprocess`: rint on both sides, clip and
the difficult marking on the ground truth). Those steps are idempotent, so already prepared inputs give the
same result. Nothing is matched in ``update``: the order in which an image's predictions are visited is their
order in the *global* ranking (``np.argsort(-conf)``, numpy's unstable sort, over all images concatenated in
update order), which for tied scores is only known once every image is in. ``compute`` therefore ranks
globally, then matches each image in one vectorised pass (:func:`.match.match_image`) and writes the TP/FP
flags at their global ranks. Feeding images one by one, in batches (:meth:`MapAccumulator.update_many`) or
through several accumulators joined with :meth:`MapAccumulator.merge` gives the identical number, as long as
the image order is the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..card import Protocol
from ..model.detections import Detections, GroundTruth
from ..model.ranking import reference_argsort
from .match import match_image
from .postprocess import prepare_detections, prepare_ground_truth

_EPS = np.finfo(np.float64).eps


def voc_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """All-point interpolated AP (VOC2010+, ``integral: max``), not 11-point.

    Sentinels recall 0 / 1 with precision 0 are added, precision is replaced by its running maximum from the
    right, and ``sum(delta recall * precision)`` is taken where recall changes. Example: ranked FP, TP, FP, TP
    with 2 positives gives precision (0, 1/2, 1/3, 1/2), recall (0, 1/2, 1/2, 1) and AP
    0.5*0.5 + 0.5*0.5 = 0.5. Empty input gives 0.0.
    """
    precision = np.asarray(precision, np.float64).reshape(-1)
    recall = np.asarray(recall, np.float64).reshape(-1)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def precision_recall(tp: np.ndarray, fp: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """One point per ranked prediction (ignored ones included): cumulative precision and recall, float64."""
    ctp = np.cumsum(np.asarray(tp, np.int64))
    cfp = np.cumsum(np.asarray(fp, np.int64))
    return ctp / np.maximum(ctp + cfp, _EPS), ctp / np.maximum(n_pos, _EPS)


@dataclass(frozen=True)
class EvalResult:
    """mAP of one run. Arrays marked *ranked* are in global ranking order (score descending).

    ap            AP of the single class "face" (0.0 when there is no prediction at all, as the
                  reference reports)
    map_percent   100 * ap, the number the reference prints
    n_pos         non-difficult GT faces; n_gt all GT faces (difficult ones included)
    precision, recall, scores, tp, fp   (n_detections,) ranked; scores float64, tp/fp bool
    image_ids     (n_images,) in update order; tp/fp/ignored/gt/pos_per_image (n_images,) int64 in that order
    """

    protocol: str
    ap: float
    n_pos: int
    n_gt: int
    n_detections: int
    n_images: int
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)
    tp: np.ndarray = field(repr=False)
    fp: np.ndarray = field(repr=False)
    image_ids: tuple[str, ...] = field(repr=False)
    tp_per_image: np.ndarray = field(repr=False)
    fp_per_image: np.ndarray = field(repr=False)
    ignored_per_image: np.ndarray = field(repr=False)
    gt_per_image: np.ndarray = field(repr=False)
    pos_per_image: np.ndarray = field(repr=False)

    @property
    def map_percent(self) -> float:
        return 100.0 * self.ap

    @property
    def n_tp(self) -> int:
        return int(self.tp.sum())

    @property
    def n_fp(self) -> int:
        return int(self.fp.sum())

    def __str__(self) -> str:
        return (f"map: {self.map_percent:.2f}% ({self.protocol}; {self.n_images} images, {self.n_pos} "
                f"positive faces of {self.n_gt}, {self.n_detections} detections, TP {self.n_tp}, "
                f"FP {self.n_fp})")


@dataclass
class _Image:
    boxes: np.ndarray  # (N, 4) cast; float32 when that is exact, else float64
    scores: np.ndarray  # (N,) as given
    gt_boxes: np.ndarray  # (G, 4) float64, cast and clipped
    gt_difficult: np.ndarray  # (G,) bool


def _compact(boxes: np.ndarray) -> np.ndarray:
    """Store integral coordinates as float32 when that loses nothing (halves the memory of ~9 M boxes)."""
    b32 = boxes.astype(np.float32)
    return b32 if np.array_equal(b32, boxes, equal_nan=True) else boxes


class MapAccumulator:
    """Collects per-image predictions and ground truth; :meth:`compute` returns the :class:`EvalResult`."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self._ids: list[str] = []
        self._seen: set[str] = set()
        self._images: list[_Image] = []

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def image_ids(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def reset(self) -> "MapAccumulator":
        self._ids, self._seen, self._images = [], set(), []
        return self

    def update(self, image_id: str, detections: Detections, ground_truth: GroundTruth | np.ndarray
               ) -> "MapAccumulator":
        """Add one image: raw detections (original-image pixels) and raw GT (x1 y1 x2 y2; a GroundTruth keeps
        its own difficult flags, OR-ed with the protocol's). Image ids must be unique."""
        if image_id in self._seen:
            raise ValueError(f"image {image_id!r} was already added to this accumulator")
        dets = prepare_detections(detections, self.protocol)
        gt = prepare_ground_truth(ground_truth, self.protocol)
        self._ids.append(image_id)
        self._seen.add(image_id)
        self._images.append(_Image(_compact(dets.boxes), np.array(dets.scores), gt.boxes, gt.difficult))
        return self

    def update_many(self, items: Iterable[tuple[str, Detections, GroundTruth | np.ndarray]]
                    ) -> "MapAccumulator":
        for image_id, dets, gt in items:
            self.update(image_id, dets, gt)
        return self

    def merge(self, other: "MapAccumulator") -> "MapAccumulator":
        """Append ``other``'s images after this one's (same protocol required)."""
        if other.protocol != self.protocol:
            raise ValueError("cannot merge accumulators with different protocols")
        dup = self._seen.intersection(other._ids)
        if dup:
            raise ValueError(f"image(s) present in both accumulators: {sorted(dup)[:5]}")
        self._ids.extend(other._ids)
        self._seen.update(other._ids)
        self._images.extend(other._images)
        return self

    def compute(self) -> EvalResult:
        p = self.protocol
        imgs = self._images
        counts = np.array([len(im.scores) for im in imgs], np.int64)
        offsets = np.concatenate(([0], np.cumsum(counts)))
        n_det = int(offsets[-1])
        conf = (np.concatenate([np.asarray(im.scores, np.float64) for im in imgs]) if imgs
                else np.zeros(0, np.float64))
        order = reference_argsort(-conf)  # the reference ranking, ties included (numpy's classic argsort)
        # Global ranks grouped by image, ascending within each image (a stable sort of the ranked image
        # indices; radix sort for up to 65535 images): the order in which the reference visits each
        # image's predictions.
        n_img = len(imgs)
        img_of = np.repeat(np.arange(n_img, dtype=np.uint16 if n_img < 2 ** 16 else np.int64), counts)
        by_image = np.argsort(img_of[order], kind="stable")

        tp = np.zeros(n_det, bool)  # indexed by global rank
        fp = np.zeros(n_det, bool)
        tp_i, fp_i, ign_i = (np.zeros(n_img, np.int64) for _ in range(3))
        gt_i = np.array([len(im.gt_boxes) for im in imgs], np.int64)
        pos_i = np.array([int((~im.gt_difficult).sum()) for im in imgs], np.int64)
        for k, im in enumerate(imgs):
            if counts[k] == 0:
                continue
            ranks = by_image[offsets[k]:offsets[k + 1]]
            local = order[ranks] - offsets[k]
            m = match_image(im.boxes[local], im.gt_boxes, im.gt_difficult, p.overlap_threshold,
                            p.include_boundaries)
            tp[ranks] = m.tp
            fp[ranks] = m.fp
            tp_i[k] = int(m.tp.sum())
            fp_i[k] = int(m.fp.sum())
            ign_i[k] = int(counts[k]) - tp_i[k] - fp_i[k]

        n_gt = int(gt_i.sum())
        n_pos = int(pos_i.sum())
        if n_det:
            precision, recall = precision_recall(tp, fp, n_pos)
            ap = voc_ap(precision, recall)
        else:  # the reference warns "No detections" and reports 0
            precision = recall = np.zeros(0, np.float64)
            ap = 0.0
        return EvalResult(
            protocol=p.name, ap=ap, n_pos=n_pos, n_gt=n_gt, n_detections=n_det, n_images=n_img,
            precision=precision, recall=recall, scores=conf[order], tp=tp, fp=fp,
            image_ids=tuple(self._ids), tp_per_image=tp_i, fp_per_image=fp_i, ignored_per_image=ign_i,
            gt_per_image=gt_i, pos_per_image=pos_i,
        )
