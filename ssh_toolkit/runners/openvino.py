"""OpenVINO runner for an IR, with a synchronous ``infer`` and an async queue for datasets."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np

from ..errors import BackendError
from ..model.outputs import RawOutputs
from .base import Runner

# Pin f32 execution: CPUs with AMX/bf16 would otherwise run an FP32 IR in bf16 and parity would be meaningless.
PARITY_CONFIG = {"INFERENCE_PRECISION_HINT": "f32"}
EXEC_CHOICES = ("f32", "bf16", "default")  # --exec-precision: pinned f32, pinned bf16, or the runtime's default


def precision_name(value) -> str:
    """OpenVINO's element type (or its string) as the short name the hint takes: ``bf16``, ``f32``, ``f16``."""
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return {"bfloat16": "bf16", "float32": "f32", "float16": "f16"}.get(name, name)


def default_exec_precision(device: str = "CPU") -> str:
    """The precision ``device`` runs an FP32 model in when nothing is pinned (bf16 on CPUs with avx512_bf16/AMX)."""
    import openvino as ov

    return precision_name(ov.Core().get_property(device, "INFERENCE_PRECISION_HINT"))


class OpenVINORunner(Runner):
    def __init__(self, xml: str | Path, expected_outputs: Sequence[str], name: str = "openvino",
                 config: Mapping[str, str] | None = None, device: str = "CPU", jobs: int = 0,
                 expect_exec_precision: str | None = None) -> None:
        super().__init__(expected_outputs)
        # The precision the model is named after: activation fails if the compiled model runs another one.
        self.expect_exec_precision = expect_exec_precision
        self.exec_precision: str | None = None  # read back from the compiled model
        self.jobs = jobs  # infer requests in flight in infer_many (0: OpenVINO's optimal number)
        self.xml = Path(xml)
        self.name = name
        self.device = device
        self.config = dict(PARITY_CONFIG if config is None else config)
        self._compiled = None
        self._request = None

    def _activate(self) -> None:
        from openvino.runtime import Core

        if not self.xml.is_file() or not self.xml.with_suffix(".bin").is_file():
            raise BackendError(f"{self.xml}: IR .xml/.bin not found; run 'ssh-toolkit convert' first")
        try:
            core = Core()
            self._compiled = core.compile_model(core.read_model(str(self.xml)), self.device, self.config)
        except RuntimeError as e:
            raise BackendError(f"{self.xml}: OpenVINO cannot load the IR: {str(e).strip().splitlines()[0]}") from None
        self.exec_precision = precision_name(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        if self.expect_exec_precision and self.exec_precision != self.expect_exec_precision:
            raise BackendError(f"{self.xml}: compiled to run in {self.exec_precision}, not the "
                               f"{self.expect_exec_precision} its model name {self.name!r} says")
        self._request = self._compiled.create_infer_request()

    @property
    def output_names(self) -> list[str]:
        return [o.get_any_name() for o in self._compiled.outputs]

    def _named(self, request) -> dict[str, np.ndarray]:
        return {o.get_any_name(): request.get_tensor(o).data.copy() for o in self._compiled.outputs}

    def _infer(self, tensor: np.ndarray) -> Mapping[str, np.ndarray]:
        self._request.infer({0: tensor})
        return self._named(self._request)

    def infer_many(self, items: Iterable[tuple[Hashable, np.ndarray]],
                   on_result: Callable[[Hashable, RawOutputs], None]) -> None:
        """Run ``items`` (key, tensor) through an AsyncInferQueue of ``jobs`` requests.

        Overlaps the caller's image decoding/resizing (the iterator) and ``on_result`` with inference.
        ``on_result`` runs on OpenVINO's callback threads, serialised by a lock.
        """
        from openvino.runtime import AsyncInferQueue

        if not self.active:
            raise BackendError(f"{self.name}: infer_many() called before activate()")
        queue = AsyncInferQueue(self._compiled, self.jobs)
        errors: list[BaseException] = []
        lock = threading.Lock()

        def done(request, key) -> None:
            try:
                raw = RawOutputs.from_named(self._named(request).items(), self.name,
                                            request.latency / 1000.0, expected=self.expected_outputs)
                with lock:
                    on_result(key, raw)
            except BaseException as e:  # surfaced on the caller's thread below
                errors.append(e)

        queue.set_callback(done)
        try:
            for key, tensor in items:
                if errors:
                    break
                queue.start_async({0: tensor}, key)
        finally:  # also on Ctrl-C: let requests in flight finish (their results are cached) before teardown
            queue.wait_all()
        if errors:
            raise errors[0]

    def _deactivate(self) -> None:
        self._request = None
        self._compiled = None
