"""Box match rate: the share of reference detections the test model reproduces, accumulated over images."""

from __future__ import annotations

import numpy as np
import pytest

from ssh_toolkit.metric.box_match import BoxMatch, BoxMatchAccumulator
from ssh_toolkit.model.detections import Detections


def _dets(boxes, scores) -> Detections:
    return Detections(np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float32))


def test_compute_counts_reproduced_reference_boxes_over_images():
    acc = BoxMatchAccumulator(min_score=0.5, iou=0.9)
    ref = _dets([[0, 0, 100, 100], [200, 200, 300, 300], [400, 400, 500, 500]], [0.9, 0.8, 0.3])
    # The first box is reproduced (IoU 0.98, its score below min_score does not matter), the second is moved
    # too far (IoU 0.5), the third is below min_score; one strong test box has no reference.
    test = _dets([[0, 0, 100, 98], [200, 200, 300, 250], [600, 600, 700, 700]], [0.45, 0.8, 0.7])
    acc.update(ref, test)
    acc.update(_dets([[0, 0, 10, 10]], [0.6]), _dets([[0, 0, 10, 10]], [0.6]))
    got = acc.compute()
    assert got == BoxMatch(n_ref=3, n_test=3, matched=2, box_match_rate=pytest.approx(2 / 3), only_ref=1,
                           only_test=2, mean_abs_score_diff=pytest.approx(0.45 / 2, abs=1e-6),
                           max_abs_score_diff=pytest.approx(0.45, abs=1e-6), min_score=0.5, iou=0.9)


def test_no_reference_boxes_is_a_rate_of_one():
    got = BoxMatchAccumulator(0.5, 0.9).update(_dets([], []), _dets([[0, 0, 5, 5]], [0.9])).compute()
    assert got.box_match_rate == 1.0 and got.n_ref == 0 and got.only_test == 1
