"""Pure box match rate: the share of reference (MXNet) detections an IR reproduces, accumulated image by image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.detections import Detections
from ..model.overlap import metric_iou


@dataclass(frozen=True)
class BoxMatch:
    """How many reference detections the test model reproduced, over a whole dataset."""

    n_ref: int  # MXNet detections with score >= min_score
    n_test: int
    matched: int  # reference detections with a test detection at IoU >= iou
    box_match_rate: float  # matched / n_ref (1.0 when n_ref == 0)
    only_ref: int
    only_test: int
    mean_abs_score_diff: float
    max_abs_score_diff: float
    min_score: float
    iou: float


@dataclass
class BoxMatchAccumulator:
    """Greedy, score-descending matching of reference detections (score >= min_score) to test detections.

    A test detection may serve one reference detection; it can be matched whatever its own score, so a box
    whose score crosses ``min_score`` between backends does not count as lost. Plain IoU (no +1 convention).
    """

    min_score: float
    iou: float
    n_ref: int = 0
    n_test: int = 0
    matched: int = 0
    only_test: int = 0
    sum_score_diff: float = 0.0
    max_score_diff: float = 0.0

    def update(self, ref: Detections, test: Detections) -> "BoxMatchAccumulator":
        r_keep = np.flatnonzero(ref.scores >= self.min_score)
        r_keep = r_keep[np.argsort(-ref.scores[r_keep], kind="stable")]
        t_strong = test.scores >= self.min_score
        self.n_ref += len(r_keep)
        self.n_test += int(t_strong.sum())
        used = np.zeros(len(test), bool)
        if len(r_keep) and len(test):
            ious = metric_iou(ref.boxes[r_keep], test.boxes, include_boundaries=False)
            for row, i in enumerate(r_keep):
                cand = np.where(used, -1.0, ious[row])
                j = int(np.argmax(cand))
                if cand[j] >= self.iou:
                    used[j] = True
                    self.matched += 1
                    d = abs(float(ref.scores[i]) - float(test.scores[j]))
                    self.sum_score_diff += d
                    self.max_score_diff = max(self.max_score_diff, d)
        self.only_test += int((t_strong & ~used).sum())
        return self

    def compute(self) -> BoxMatch:
        return BoxMatch(
            n_ref=self.n_ref, n_test=self.n_test, matched=self.matched,
            box_match_rate=self.matched / self.n_ref if self.n_ref else 1.0,
            only_ref=self.n_ref - self.matched, only_test=self.only_test,
            mean_abs_score_diff=self.sum_score_diff / self.matched if self.matched else 0.0,
            max_abs_score_diff=self.max_score_diff, min_score=self.min_score, iou=self.iou,
        )
