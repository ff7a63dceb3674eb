import cv2
import numpy as np
import pytest

from ssh_toolkit.card import SidePreprocess
from ssh_toolkit.model.preprocess import resize, to_tensor


def test_resize_runs_on_uint8_and_records_scales():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 80, 3), dtype=np.uint8)
    r = resize(img, 32)
    expected = cv2.resize(img, (32, 32), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    assert r.image.dtype == np.float32
    np.testing.assert_array_equal(r.image, expected)
    assert np.all(r.image == np.round(r.image))  # uint8-quantised values, as the Accuracy Checker feeds
    assert (r.scale_x, r.scale_y) == (32 / 80, 32 / 48)
    with pytest.raises(ValueError, match="uint8"):
        resize(img.astype(np.float32), 32)


def test_to_tensor_rgb_minus_mean_and_bgr_passthrough():
    img = np.zeros((2, 2, 3), np.float32)
    img[..., 0], img[..., 1], img[..., 2] = 10, 20, 30  # B, G, R
    rgb = to_tensor(img, SidePreprocess("RGB", (1.0, 2.0, 3.0)))
    assert rgb.shape == (1, 3, 2, 2) and rgb.dtype == np.float32
    assert rgb[0, :, 0, 0].tolist() == [29.0, 18.0, 7.0]
    bgr = to_tensor(img, SidePreprocess("BGR", (0.0, 0.0, 0.0)))
    assert bgr[0, :, 1, 1].tolist() == [10.0, 20.0, 30.0]
    swapped = to_tensor(img, SidePreprocess("BGR", (0.0, 0.0, 0.0)), swap_channels=True)
    assert swapped[0, :, 1, 1].tolist() == [30.0, 20.0, 10.0]


def test_ir_and_mxnet_inputs_differ_exactly_by_the_folded_preprocessing(card):
    """What Model Optimizer folds in (--reverse_input_channels, --mean_values) turns the IR feed into MXNet's."""
    rng = np.random.default_rng(1)
    resized = resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), 32).image
    ir = to_tensor(resized, card.preprocess["ir"])
    mx = to_tensor(resized, card.preprocess["mxnet"])
    folded = ir[:, ::-1] - np.asarray(card.preprocess["mxnet"].mean, np.float32)[None, :, None, None]
    np.testing.assert_array_equal(folded, mx)
