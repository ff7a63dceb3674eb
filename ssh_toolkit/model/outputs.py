"""Raw network outputs keyed by canonical name, and pairing of two backends' outputs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from ..errors import BackendError

# MXNet's list_outputs() appends "_output"; OpenVINO IR tensor names carry a ":0" port suffix.
_SUFFIXES = (":0", "_output")


def canonical_name(name: str) -> str:
    """Base name of an output: ``rpn_bbox_pred_stride8:0`` and ``rpn_bbox_pred_stride8_output`` both give
    ``rpn_bbox_pred_stride8``."""
    changed = True
    while changed:
        changed = False
        for s in _SUFFIXES:
            if name.endswith(s):
                name, changed = name[: -len(s)], True
    return name


@dataclass(frozen=True)
class RawOutputs:
    """One forward pass: arrays keyed by canonical output name, plus who produced them and how fast."""

    arrays: Mapping[str, np.ndarray]
    runner: str
    seconds: float = 0.0

    @classmethod
    def from_named(cls, named: Iterable[tuple[str, np.ndarray]], runner: str, seconds: float = 0.0,
                   expected: Iterable[str] | None = None) -> "RawOutputs":
        """Build from backend-native names; with ``expected`` every expected output must be present."""
        arrays: dict[str, np.ndarray] = {}
        for name, arr in named:
            base = canonical_name(name)
            if base in arrays:
                raise BackendError(f"{runner}: two outputs map to the same name {base!r}")
            arrays[base] = np.asarray(arr)
        if expected is not None:
            missing = [n for n in expected if n not in arrays]
            if missing:
                raise BackendError(f"{runner}: model lacks expected output(s) {missing}; it has {sorted(arrays)}")
            arrays = {n: arrays[n] for n in expected}
        return cls(arrays, runner, seconds)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]
