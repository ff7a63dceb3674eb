"""What runs on a Dask worker: one batch of images through one model, the model loaded once per worker.

Imported by the workers (the toolkit must be installed there, at the driver's version). Nothing here reads the
workspace or the dataset: the model files and the image bytes arrive with the task (see ``executors.cluster``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..runners.base import Runner
from ..runners.spec import RunnerSpec

_lock = threading.Lock()  # one batch at a time per worker process: the runner is not shared between threads
_loaded: dict[str, Runner] = {}  # model key -> active runner (the latest model only: the driver goes model by model)
LOADS: list[str] = []  # model keys in the order this process loaded them (the tests read it)


def _worker_folder() -> Path:
    try:
        from distributed import get_worker

        return Path(get_worker().local_directory)
    except (ImportError, ValueError):  # not on a worker (called directly): a private temporary folder
        import tempfile

        return Path(tempfile.mkdtemp(prefix="ssh-toolkit-worker-"))


def _worker_threads() -> int:
    """The CPU threads this worker may use: its Dask thread count (one per core it was given)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        return int(getattr(worker, "nthreads", 0) or worker.state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return 0


def runner_for(key: str, spec: RunnerSpec, files: Mapping[str, bytes]) -> Runner:
    """The active runner of model ``key``, made from ``files`` (name -> bytes) on first use, then reused."""
    if key in _loaded:
        return _loaded[key]
    for old in list(_loaded):  # free the previous model's memory before loading the next
        _loaded.pop(old).deactivate()
    folder = _worker_folder() / "ssh-toolkit-models" / key
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != len(data):
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)
    runner = spec.build(folder, threads=_worker_threads()).activate()
    _loaded[key] = runner
    LOADS.append(key)
    return runner


def infer_batch(key: str, spec: RunnerSpec, files: Mapping[str, bytes], preprocess, size: int,
                items: Sequence[tuple[int, str, bytes]]) -> list[tuple[int, dict[str, np.ndarray], float,
                                                                         tuple[int, int]]]:
    """Decode, resize and preprocess each ``(index, name, image bytes)`` of ``items`` exactly as the local
    executor does, run them through the model, and return ``(index, outputs, seconds, (h, w))`` per image."""
    from ..data.wider import decode_image
    from ..model.preprocess import resize, to_tensor

    results = []
    with _lock:
        runner = runner_for(key, spec, files)
        hw_of: dict[int, tuple[int, int]] = {}

        def tensors():
            for i, name, data in items:
                image = decode_image(data, name)
                hw_of[i] = image.shape[:2]
                yield i, to_tensor(resize(image, size).image, preprocess)

        runner.infer_many(tensors(), lambda i, raw: results.append((i, dict(raw.arrays), raw.seconds,
                                                                    tuple(hw_of.pop(i)))))
    return results


def loads() -> list[str]:
    """The model keys this worker process loaded, in order (one entry per load)."""
    return list(LOADS)


def dask_setup(worker=None) -> None:
    """Preloaded into the workers of the local cluster: Ctrl-C at a terminal reaches the whole process group,
    and the driver handles it (cancels the work, keeps what is cached, stops the cluster); a worker ignores it
    instead of dying with a traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
