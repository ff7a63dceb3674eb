"""The one runner interface: activate -> infer(tensor) / infer_many(items, on_result) -> deactivate.

Callers never ask which backend they hold: ``infer_many`` is sequential here and a backend with a better way
through many inputs (OpenVINO's async queue) overrides it.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import BackendError
from ..model.outputs import RawOutputs


class Runner(ABC):
    """Subclasses implement ``_activate``, ``_infer`` (native names -> arrays) and ``_deactivate``."""

    name: str = "runner"

    def __init__(self, expected_outputs: Sequence[str]) -> None:
        self.expected_outputs = tuple(expected_outputs)
        self.active = False

    def activate(self) -> "Runner":
        if not self.active:
            self._activate()
            self.active = True
        return self

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def infer(self, tensor: np.ndarray) -> RawOutputs:
        if not self.active:
            raise BackendError(f"{self.name}: infer() called before activate()")
        start = time.perf_counter()
        named = self._infer(tensor)
        seconds = time.perf_counter() - start
        return RawOutputs.from_named(named.items(), self.name, seconds, expected=self.expected_outputs)

    def infer_many(self, items: Iterable[tuple[Hashable, np.ndarray]],
                   on_result: Callable[[Hashable, RawOutputs], None]) -> None:
        """Run every ``(key, tensor)`` of ``items`` and call ``on_result(key, outputs)`` for each.

        ``items`` is consumed lazily, so the caller's decoding overlaps inference where the backend allows.
        Results may arrive out of order; ``on_result`` is never called concurrently.
        """
        for key, tensor in items:
            on_result(key, self.infer(tensor))

    @abstractmethod
    def _activate(self) -> None: ...

    @abstractmethod
    def _infer(self, tensor: np.ndarray) -> Mapping[str, np.ndarray]: ...

    def _deactivate(self) -> None:  # noqa: B027 - optional hook: most runners have nothing to release
        pass
