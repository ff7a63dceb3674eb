"""Anchors: the spec's table (§3.1) and the (h, w, k) plane layout."""

import numpy as np
import pytest

from ssh_toolkit.card import load_card
from ssh_toolkit.model.anchors import anchor_plane, base_anchors_by_stride, generate_base_anchors

# spec §3.1: stride -> (first scale, second scale)
TABLE = {
    32: [[-248, -248, 263, 263], [-120, -120, 135, 135]],
    16: [[-56, -56, 71, 71], [-24, -24, 39, 39]],
    8: [[-8, -8, 23, 23], [0, 0, 15, 15]],
}


def test_base_anchor_table_from_card():
    bases = base_anchors_by_stride(load_card().anchors)
    assert sorted(bases) == [8, 16, 32]
    for stride, rows in TABLE.items():
        assert bases[stride].dtype == np.float64
        np.testing.assert_array_equal(bases[stride], np.array(rows, np.float64))


def test_anchor_sizes_are_16_times_scale():
    a = generate_base_anchors(16, [1.0], [32, 16, 8, 4, 2, 1])
    np.testing.assert_array_equal(a[:, 2] - a[:, 0] + 1, [512, 256, 128, 64, 32, 16])
    # centre of the reference box [0, 0, 15, 15] is 7.5 for every scale
    np.testing.assert_array_equal((a[:, 0] + a[:, 2]) / 2, 7.5)


def test_ratio_keeps_area_and_rounds():
    # ratio 0.5 (h/w): w = round(sqrt(256/0.5)) = round(22.6) = 23, h = round(11.5) = 12 (half to even)
    a = generate_base_anchors(16, [0.5, 1.0, 2.0], [1])
    w = a[:, 2] - a[:, 0] + 1
    h = a[:, 3] - a[:, 1] + 1
    np.testing.assert_array_equal(w, [23, 16, 11])
    np.testing.assert_array_equal(h, [12, 16, 22])


@pytest.mark.parametrize("height,width", [(1, 1), (2, 3), (5, 4)])
def test_plane_layout_h_w_k(height, width):
    base = np.array(TABLE[16], np.float64)
    plane = anchor_plane(height, width, 16, base)
    assert plane.shape == (height * width * 2, 4) and plane.dtype == np.float64
    for h in range(height):
        for w in range(width):
            for k in range(2):
                np.testing.assert_array_equal(plane[(h * width + w) * 2 + k], base[k] + [w * 16, h * 16] * 2)


def test_plane_sizes_at_640():
    bases = base_anchors_by_stride(load_card().anchors)
    sizes = {s: len(anchor_plane(640 // s, 640 // s, s, bases[s])) for s in bases}
    assert sizes == {32: 800, 16: 3200, 8: 12800}
