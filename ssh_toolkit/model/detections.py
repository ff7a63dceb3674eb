"""Records that flow between decoding, the dataset reader and the metric: parallel numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    """Detections of one image, in original-image pixels.

    boxes  (N, 4) float64  x1, y1, x2, y2
    scores (N,)   float32  as the network produced them (no threshold)
    Order matters for bit-exact tie breaking: strides in card order, each in NMS keep order.
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"Detections.boxes must be (N, 4), got {self.boxes.shape}")
        if self.scores.shape != (self.boxes.shape[0],):
            raise ValueError(f"Detections.scores must be ({self.boxes.shape[0]},), got {self.scores.shape}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float64), np.zeros((0,), np.float32))


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth faces of one image, x1 y1 x2 y2 in original-image pixels (x2 = x + w, no -1).

    boxes     (G, 4) float64
    difficult (G,)   bool     set by the protocol's clip/filter step, not by the reader
    """

    boxes: np.ndarray
    difficult: np.ndarray

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"GroundTruth.boxes must be (G, 4), got {self.boxes.shape}")
        if self.difficult.shape != (self.boxes.shape[0],) or self.difficult.dtype != bool:
            raise ValueError(f"GroundTruth.difficult must be bool ({self.boxes.shape[0]},), got "
                             f"{self.difficult.dtype} {self.difficult.shape}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def from_boxes(cls, boxes: np.ndarray) -> "GroundTruth":
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        return cls(boxes, np.zeros(len(boxes), bool))
