"""OpenVINO runner for an IR, with a synchronous ``infer`` and an async queue for datasets."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Hashable, Iterable, Iterator, Mapping, Sequence

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


_WHERE = re.compile(r"^(Exception from \S+:\d+:|Check '.*' failed at \S+:\d+:)\s*")


def reason(error: BaseException) -> str:
    """OpenVINO's error text without its source-location lines, on one line."""
    lines = [ln.strip() for ln in str(error).splitlines()]
    kept = [_WHERE.sub("", ln) for ln in lines]
    kept = [ln for ln in kept if ln]
    return " ".join(kept) or type(error).__name__


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Hold back what native code writes to fd 2 (OpenVINO's TensorFlow frontend logs parse errors there while
    it probes a file that is not a valid IR); replayed when the block succeeds, dropped when it raises (the
    exception says what went wrong, in one line)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (e.g. captured by a test runner): nothing to hold back
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if not failed:
                held.seek(0)
                data = held.read()
                if data:
                    os.write(2, data)


def read_model(core, xml: Path):
    """``core.read_model`` with a one-line BackendError naming the file when OpenVINO cannot read it."""
    try:
        with quiet_native_stderr():
            return core.read_model(str(xml))
    except RuntimeError as e:
        raise BackendError(f"{xml}: OpenVINO cannot read the IR: {reason(e)}") from None


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
        from openvino import Core

        if not self.xml.is_file() or not self.xml.with_suffix(".bin").is_file():
            raise BackendError(f"{self.xml}: IR .xml/.bin not found; run 'ssh-toolkit convert' first")
        core = Core()
        model = read_model(core, self.xml)
        try:
            self._compiled = core.compile_model(model, self.device, self.config)
        except RuntimeError as e:
            raise BackendError(f"{self.xml}: OpenVINO cannot compile the IR for {self.device}: {reason(e)}") from None
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
        """Run ``items`` (key, tensor) through a pool of infer requests; ``on_result(key, outputs)`` per result,
        in input order, on the caller's thread.

        Overlaps the caller's image decoding/resizing (the iterator) and ``on_result`` with inference: up to
        ``jobs`` requests (0 = the compiled model's optimal number) run while the next image is prepared.
        No Python code runs on OpenVINO's threads: with OpenVINO 2026 an ``AsyncInferQueue`` Python callback
        can deadlock the teardown of the compiled model (a worker thread waits for the GIL while the main
        thread, holding it, joins that worker).
        """
        from collections import deque

        if not self.active:
            raise BackendError(f"{self.name}: infer_many() called before activate()")
        n = self.jobs or int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        free = [self._compiled.create_infer_request() for _ in range(max(1, n))]
        pending: deque = deque()

        def finish() -> None:
            request, key = pending.popleft()
            request.wait()  # releases the GIL while waiting
            raw = RawOutputs.from_named(self._named(request).items(), self.name, request.latency / 1000.0,
                                        expected=self.expected_outputs)
            free.append(request)
            on_result(key, raw)

        try:
            for key, tensor in items:
                if not free:
                    finish()
                request = free.pop()
                request.start_async({0: tensor})
                pending.append((request, key))
            while pending:
                finish()
        except KeyboardInterrupt:  # let requests in flight finish and keep their results (they are cached)
            while pending:
                finish()
            raise
        finally:
            for request, _ in pending:  # another error: wait for what is in flight before teardown
                request.wait()

    def _deactivate(self) -> None:
        self._request = None
        self._compiled = None
