"""Decoding and per-stride NMS (spec §3): golden vector, +1 convention, pre-NMS top-k, tie order."""

import math

import numpy as np
import pytest

from ssh_toolkit.card import load_card
from ssh_toolkit.errors import BackendError
from ssh_toolkit.model.decode import decode, decode_deltas, decode_stride, nms
from ssh_toolkit.model.outputs import RawOutputs

CARD = load_card()


def zero_raw(size=640):
    raw = {}
    for o in CARD.outputs:
        n = size // o.stride
        raw[o.name] = np.zeros((1, 4 if o.kind == "scores" else 8, n, n), np.float32)
    return raw


def test_golden_vector_446_boxes():
    raw = zero_raw()
    raw["rpn_cls_prob_reshape_stride8"][0, 3, 10, 20] = 0.9
    raw["rpn_cls_prob_reshape_stride16"][0, 2, 5, 7] = 0.8
    raw["rpn_bbox_pred_stride16"][0, 0:4, 5, 7] = (0.1, -0.2, math.log(2), 0)
    d = decode(raw, CARD, 640 / 1024, 640 / 768)
    assert len(d) == 446
    assert d.boxes.dtype == np.float64 and d.scores.dtype == np.float32
    i9 = int(np.flatnonzero(d.scores == np.float32(0.9))[0])
    np.testing.assert_allclose(d.boxes[i9], [256.0, 96.0, 280.0, 114.0], rtol=0, atol=1e-9)
    i8 = int(np.flatnonzero(d.scores == np.float32(0.8))[0])
    np.testing.assert_allclose(d.boxes[i8], [7.68, -1.92, 415.68, 150.48], rtol=0, atol=1e-4)
    # zero-score boxes are kept (no threshold); stride order 32, 16, 8: the 0.8 box heads the stride-16 block
    assert (d.scores == 0).sum() == 444
    assert d.scores[i8 - 1] == 0 and i8 < i9


def test_decode_accepts_raw_outputs_and_any_size():
    raw = zero_raw(160)
    d1 = decode(raw, CARD, 1.0, 1.0)
    d2 = decode(RawOutputs(raw, "test"), CARD, 1.0, 1.0)
    np.testing.assert_array_equal(d1.boxes, d2.boxes)
    assert len(d1) > 0


def test_decode_errors():
    raw = zero_raw(64)
    del raw["rpn_bbox_pred_stride8"]
    with pytest.raises(BackendError, match="missing"):
        decode(raw, CARD, 1, 1)
    raw = zero_raw(64)
    raw["rpn_bbox_pred_stride8"] = np.zeros((1, 8, 4, 4), np.float32)
    with pytest.raises(BackendError, match="stride 8"):
        decode(raw, CARD, 1, 1)
    raw = zero_raw(64)
    raw["rpn_cls_prob_reshape_stride8"] = np.zeros((1, 2, 8, 8), np.float32)
    with pytest.raises(BackendError, match="expected"):
        decode(raw, CARD, 1, 1)


def test_decode_deltas_plus_one_convention():
    a = np.array([[0., 0, 15, 15]])  # w = h = 16, centre 7.5
    np.testing.assert_array_equal(decode_deltas(a, np.zeros((1, 4), np.float32)), a)
    out = decode_deltas(a, np.array([[0.5, -0.25, math.log(2), 0]], np.float32))
    # centre (7.5 + 8, 7.5 - 4); width 32 -> 15.5 +- 15.5; height 16
    np.testing.assert_allclose(out, [[0.0, -4.0, 31.0, 11.0]], atol=1e-5)
    assert decode_deltas(np.zeros((0, 4)), np.zeros((0, 4), np.float32)).shape == (0, 4)


def test_delta_channel_order_dw_then_dh():
    base = np.array([[0., 0, 15, 15]])
    s = np.zeros((2, 1, 1), np.float32)
    s[1] = 1
    d = np.zeros((4, 1, 1), np.float32)
    d[2] = math.log(2)  # channel 2 is width
    b, _ = decode_stride(s, d, 8, base, 0.3, None, True)
    assert b[0, 2] - b[0, 0] + 1 == pytest.approx(32, abs=1e-4)
    assert b[0, 3] - b[0, 1] + 1 == pytest.approx(16, abs=1e-4)


def test_exp_in_float32():
    d = np.array([[0, 0, 0.3, 0.7]], np.float32)
    out = decode_deltas(np.array([[0., 0, 99, 99]]), d)
    pw32 = np.float64(np.exp(np.float32(0.3))) * 100
    pw64 = np.exp(np.float64(np.float32(0.3))) * 100
    assert pw32 != pw64  # the test can tell the two apart
    assert out[0, 0] == 49.5 - 0.5 * (pw32 - 1.0)


def test_nms_top_k_before_suppression():
    # spec §3.4: k=2 on 3 boxes, the first suppresses the second -> [0] only (the third, which would survive,
    # was cut before suppression)
    boxes = np.array([[100., 100, 110, 110], [101, 101, 111, 111], [0., 0, 10, 10]])
    scores = np.array([.9, .8, .7], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.3, 2, True), [0])
    np.testing.assert_array_equal(nms(boxes, scores, 0.3, None, True), [0, 2])
    np.testing.assert_array_equal(nms(boxes, scores, 0.99, 2, True), [0, 1])


def test_nms_threshold_exactly_survives():
    # NMS IoU with +1: [0,9] x [0,9] vs [0,9] x [0,19]... inter 100, union 100 + 200 - 100 -> 0.5
    boxes = np.array([[0., 0, 9, 9], [0., 0, 9, 19]])
    scores = np.array([.9, .8], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, None, True), [0, 1])
    np.testing.assert_array_equal(nms(boxes, scores, 0.49, None, True), [0])


def test_nms_tie_order_descending_index_for_small_arrays():
    boxes = np.array([[i * 100., 0, i * 100 + 10, 10] for i in range(6)])
    scores = np.array([.5, .5, .7, .5, .5, .5], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.3, None, True), [2, 5, 4, 3, 1, 0])
    assert nms(boxes, scores, 0.3, None, True).dtype == np.int64
    assert nms(np.zeros((0, 4)), np.zeros(0, np.float32), 0.3).size == 0


def test_nms_no_boundaries_variant():
    boxes = np.array([[0., 0, 10, 10], [10., 0, 20, 10]])  # touch at x = 10
    scores = np.array([.9, .8], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.0, None, False), [0, 1])
    np.testing.assert_array_equal(nms(boxes, scores, 0.0, None, True), [0])
