"""Pure preprocessing: uint8 BGR image -> each backend's input tensor (spec §2).

The resize is shared by both backends and runs on the uint8 image (OpenCV INTER_LINEAR, aspect ratio not
kept); only its result is cast to float32, exactly as the Accuracy Checker does. What differs per backend is
described by the card's ``SidePreprocess``: MXNet wants RGB minus the mean, the IR wants BGR 0..255 because
Model Optimizer folded the channel swap and the mean into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..card import SidePreprocess


@dataclass(frozen=True)
class Resized:
    """A resized image and the factors that map network coordinates back (x_orig = x_net / scale_x)."""

    image: np.ndarray  # (size, size, 3) float32, BGR, integral values 0..255
    scale_x: float
    scale_y: float


def resize(image_bgr: np.ndarray, size: int) -> Resized:
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 BGR image, got {image_bgr.dtype} {image_bgr.shape}")
    h, w = image_bgr.shape[:2]
    out = cv2.resize(image_bgr, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return Resized(out, size / w, size / h)


def to_tensor(resized_bgr: np.ndarray, side: SidePreprocess, *, swap_channels: bool = False) -> np.ndarray:
    """HxWx3 float32 BGR -> [1, 3, H, W] float32 in the side's channel order, minus its mean.

    ``swap_channels`` deliberately feeds the wrong channel order (the compare self-check).
    """
    want_rgb = (side.channel_order == "RGB") != swap_channels
    x = resized_bgr[..., ::-1] if want_rgb else resized_bgr
    x = x - np.asarray(side.mean, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
