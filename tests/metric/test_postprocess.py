"""cast -> clip -> filter (spec §4): rint half to even, the fixed 1024 clip, the 64 px height rule."""

import dataclasses

import numpy as np

from ssh_toolkit.card import load_card
from ssh_toolkit.metric.postprocess import (
    cast_boxes,
    clip_boxes,
    difficult_mask,
    prepare_detections,
    prepare_ground_truth,
)
from ssh_toolkit.model.detections import Detections, GroundTruth

P = load_card().protocol


def test_rint_half_to_even():
    b = cast_boxes(np.array([[64.5, 65.5, -0.5, 2.5], [0.49, 0.51, 1.5, -1.5]]))
    np.testing.assert_array_equal(b, [[64, 66, 0, 2], [0, 1, 2, -2]])
    assert b.dtype == np.float64
    assert np.signbit(b[0, 2])  # -0.5 -> -0.0


def test_clip_is_fixed_bound_inclusive():
    b = clip_boxes(np.array([[-5., -1, 1030, 1024]]), 1024)
    np.testing.assert_array_equal(b, [[0, 0, 1024, 1024]])


def test_height_64_kept_63_difficult():
    gt = prepare_ground_truth(np.array([[0., 0, 10, 64], [0., 0, 10, 63], [0., 0, 10, 1024],
                                        [0., 0, 10, 1023]]), P)
    np.testing.assert_array_equal(gt.difficult, [False, True, True, False])


def test_rint_before_height():
    # 63.6 - 0.4 = 63.2 raw but rint gives 64 - 0 = 64 -> kept; 64.5 - 0.5 -> 64 - 0 = 64 -> kept;
    # 64.4 - 0.6 -> 64 - 1 = 63 -> difficult
    gt = prepare_ground_truth(np.array([[0., .4, 10, 63.6], [0., .5, 10, 64.5], [0., .6, 10, 64.4]]), P)
    np.testing.assert_array_equal(gt.boxes[:, [1, 3]], [[0, 64], [0, 64], [1, 64]])
    np.testing.assert_array_equal(gt.difficult, [False, False, True])


def test_clip_then_filter():
    # 1100 tall, clipped to [0, 1024] -> 1024 -> difficult;
    # 200 tall straddling the bottom: 950..1150 -> 74 kept; straddling by more: 980..1180 -> 44 difficult;
    # x entirely outside -> width 0 -> difficult (is_empty)
    gt = prepare_ground_truth(np.array([[0., -50, 10, 1050], [0., 950, 10, 1150], [0., 980, 10, 1180],
                                        [1100., 0, 1200, 100]]), P)
    np.testing.assert_array_equal(gt.boxes[0], [0, 0, 10, 1024])
    np.testing.assert_array_equal(gt.difficult, [True, False, True, True])


def test_empty_boxes_are_difficult():
    gt = prepare_ground_truth(np.array([[600., 100, 600, 180], [5., 5, 4, 100]]), P)  # w = 0, w < 0
    np.testing.assert_array_equal(gt.difficult, [True, True])
    no_empty = dataclasses.replace(P, filter_empty=False)
    np.testing.assert_array_equal(difficult_mask(gt.boxes, P.height_range, False), [False, False])
    np.testing.assert_array_equal(prepare_ground_truth(gt.boxes, no_empty).difficult, [False, False])


def test_prior_difficult_flags_kept_and_ignore_difficult_off():
    gt = GroundTruth(np.array([[0., 0, 100, 100], [0., 0, 10, 10]]), np.array([True, False]))
    np.testing.assert_array_equal(prepare_ground_truth(gt, P).difficult, [True, True])
    off = dataclasses.replace(P, ignore_difficult=False)
    np.testing.assert_array_equal(prepare_ground_truth(gt, off).difficult, [False, False])


def test_empty_ground_truth():
    gt = prepare_ground_truth(np.zeros((0, 4)), P)
    assert len(gt) == 0 and gt.difficult.dtype == bool


def test_detections_rounded_not_clipped():
    d = Detections(np.array([[-10.5, 2.5, 2000.4, 1500.6]]), np.array([0.5], np.float32))
    out = prepare_detections(d, P)
    np.testing.assert_array_equal(out.boxes, [[-10, 2, 2000, 1501]])
    assert out.scores is d.scores


def test_idempotent():
    rng = np.random.default_rng(1)
    raw = np.sort(rng.uniform(-100, 1200, (50, 4)).reshape(50, 2, 2), axis=1).reshape(50, 4)
    once = prepare_ground_truth(raw, P)
    twice = prepare_ground_truth(once, P)
    np.testing.assert_array_equal(once.boxes, twice.boxes)
    np.testing.assert_array_equal(once.difficult, twice.difficult)
