"""How to build a model's runner from its files: what an executor ships to a machine without the workspace.

A :class:`RunnerSpec` names the runner's backend, the files it reads (shipped by content to a worker, see
``executors.dask``) and its constructor arguments. :meth:`RunnerSpec.build` makes the same runner wherever the
files are; the local executor builds it from the workspace, a worker from its own copy of the files.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from .base import Runner

THREADS_KEY = "INFERENCE_NUM_THREADS"  # OpenVINO's limit of CPU threads (a worker's share of the cores)


@dataclass(frozen=True)
class RunnerSpec:
    backend: str  # "mxnet" | "openvino"
    files: tuple[Path, ...]  # every file the runner reads, all in one folder
    args: Mapping[str, Any] = field(default_factory=dict)  # the runner's constructor arguments (see build)

    @property
    def folder(self) -> Path:
        return self.files[0].parent

    def build(self, folder: Path | None = None, threads: int = 0) -> Runner:
        """The runner, reading its files from ``folder`` (default: where they are now) under the same names.

        ``threads`` > 0 limits OpenVINO to that many CPU threads (MXNet's OpenMP threads are set by the
        process's ``OMP_NUM_THREADS``). Outputs do not depend on it (checked: tests/test_executors.py).
        """
        folder = Path(folder) if folder is not None else self.folder
        a = dict(self.args)
        if self.backend == "mxnet":
            from .mxnet import MXNetRunner

            return MXNetRunner(replace(a.pop("checkpoint"), directory=folder), **a)
        if self.backend == "openvino":
            from .openvino import OpenVINORunner

            config = dict(a.pop("config"))
            if threads > 0:
                config[THREADS_KEY] = threads
            return OpenVINORunner(folder / a.pop("xml_name"), config=config, **a)
        raise ValueError(f"unknown runner backend {self.backend!r}")
