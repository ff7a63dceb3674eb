"""Metric IoU (clamp, then +1) and NMS IoU (+1, then clamp): the spec's worked examples (§3.4, §5.1)."""

import numpy as np
import pytest

from ssh_toolkit.model.overlap import box_area, metric_iou, nms_iou


def one(a, b):
    return float(metric_iou(np.array([a], float), np.array([b], float))[0, 0])


def test_metric_disjoint_both_axes():
    # 10x10 boxes (+1 convention: x2 = x1 + 9) apart on both axes: inter 1, union 100 + 100 - 1
    assert one([0, 0, 9, 9], [20, 20, 29, 29]) == pytest.approx(1 / 199)
    assert round(one([0, 0, 9, 9], [20, 20, 29, 29]), 6) == 0.005025


def test_metric_disjoint_x_only():
    # shared y-range of 10 px -> inter 1 x 10, union 190
    assert one([0, 0, 9, 9], [20, 0, 29, 9]) == pytest.approx(10 / 190)
    assert round(one([0, 0, 9, 9], [20, 0, 29, 9]), 5) == 0.05263


def test_metric_two_points():
    assert one([5, 5, 5, 5], [50, 60, 50, 60]) == 1.0


def test_metric_shift_by_half():
    assert one([0, 0, 99, 9], [50, 0, 149, 9]) == pytest.approx(1 / 3)


def test_metric_identical_and_without_boundaries():
    assert one([10, 10, 20, 30], [10, 10, 20, 30]) == 1.0
    v = metric_iou(np.array([[0., 0, 10, 10]]), np.array([[5., 0, 15, 10]]), include_boundaries=False)
    assert v[0, 0] == pytest.approx(50 / 150)


def test_metric_zero_union_is_zero():
    # without boundaries two identical points have union 0
    v = metric_iou(np.array([[3., 3, 3, 3]]), np.array([[3., 3, 3, 3]]), include_boundaries=False)
    assert v[0, 0] == 0.0


def test_metric_matrix_shape_and_values():
    rng = np.random.default_rng(0)
    p = rng.integers(0, 50, (7, 2)).astype(float)
    p = np.c_[p, p + rng.integers(0, 30, (7, 2))]
    g = rng.integers(0, 50, (4, 2)).astype(float)
    g = np.c_[g, g + rng.integers(0, 30, (4, 2))]
    m = metric_iou(p, g)
    assert m.shape == (7, 4) and m.dtype == np.float64
    for i in range(7):
        for j in range(4):
            assert m[i, j] == one(p[i], g[j])
    assert metric_iou(np.zeros((0, 4)), g).shape == (0, 4)
    assert metric_iou(p, np.zeros((0, 4))).shape == (7, 0)


def test_nms_iou_disjoint_is_zero_and_adjacent_pixels():
    box = np.array([0., 0, 9, 9])
    others = np.array([[20., 20, 29, 29], [10., 0, 19, 9], [9., 0, 18, 9], [0., 0, 9, 9]])
    v = nms_iou(box, others)
    assert v[0] == 0.0 and v[1] == 0.0          # touching at x=9|10: +1 then clamp -> 0
    assert v[2] == pytest.approx(10 / 190)      # one shared column
    assert v[3] == 1.0


def test_box_area():
    np.testing.assert_array_equal(box_area(np.array([[0., 0, 9, 19], [5., 5, 4, 4]])), [200, 0])
    np.testing.assert_array_equal(box_area(np.array([[0., 0, 9, 19]]), include_boundaries=False), [171])
