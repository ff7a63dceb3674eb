"""The Dask executor: a model's missing images as small tasks on a Dask cluster, results cached by the driver.

* **No shared filesystem.** The driver reads the model's files and scatters them to every worker once per
  command (``broadcast``); each task carries the bytes of its images (a JPEG is ~30x smaller than the
  640x640 float32 tensor made from it, and decoding and resizing then run in parallel on the workers). A worker
  writes the model files into its own folder and loads the model once (``executors.worker``), then reuses it.
* **Batches.** A task covers ``images_per_task`` images, to spread Dask's per-task overhead (measured in
  benchmarks/bench_dask.py). At most ``window`` tasks are in flight, so the driver never holds every image in
  memory and Ctrl-C has little to cancel.
* **Results.** Workers return raw outputs; the driver writes each into the cache as its task completes
  (``as_completed``), on its own thread, and the progress bar counts images done across the cluster.
* **Faults.** A worker that dies loses its tasks; the scheduler runs them again on another worker, and the
  outputs do not depend on which worker ran them (the worker's thread count does not change a bit: checked by
  the tests). Ctrl-C cancels the cluster's remaining work; what is cached stays, the same command resumes.

Without ``--scheduler``, a ``LocalCluster`` on 127.0.0.1: one worker process per core, one thread each, each
model limited to that core (OpenVINO ``INFERENCE_NUM_THREADS``, MXNet ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import BackendError, EnvironmentProblem, UsageError
from . import Executor, Store

if TYPE_CHECKING:
    from ..card import ModelCard
    from ..inference import ModelUnderTest

INSTALL_HINT = "pip install 'ssh-toolkit[dask]'"
# Images per task: Dask's per-task overhead (19.3 ms here with 4 images in and their outputs out,
# benchmarks/README.md) is 0.4 % of 4 images of an IR (4 x 1.16 s on one core); small enough that a killed worker
# loses little work and the last task of a model ends soon.
IMAGES_PER_TASK = 4


def require_distributed():
    """The ``distributed`` module, or EnvironmentProblem (exit 3) saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise EnvironmentProblem(f"--executor dask needs Dask's distributed scheduler, which is not installed: "
                                 f"{INSTALL_HINT}") from None
    return distributed


def check_address(address: str) -> None:
    """UsageError (exit 2), before any work, when ``address`` is not a Dask scheduler address Dask can connect to
    (``foo``, ``tcp://host`` without a port, ``http://...``)."""
    from distributed.comm.addressing import get_address_host_port, parse_address

    try:
        scheme, _ = parse_address(address)
        if scheme in ("tcp", "tls", "ws", "wss"):
            get_address_host_port(address)  # ValueError without a port
        elif scheme not in ("inproc", "ucx"):
            raise ValueError(f"unknown address scheme {scheme!r}")
    except ValueError as e:
        raise UsageError(f"--scheduler {address}: not a Dask scheduler address ({' '.join(str(e).split())}); "
                         f"expected e.g. tcp://scheduler-host:8786") from None


def local_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_cluster(n_workers: int):
    """A ``LocalCluster`` on 127.0.0.1: ``n_workers`` single-threaded worker processes (one per core), MXNet's
    OpenMP pool sized to match. Workers ignore Ctrl-C (``executors.worker.dask_setup``): the driver cancels and
    stops them. Their logs are silenced: what goes wrong in a task reaches the driver as the task's exception."""
    from distributed import LocalCluster

    threads = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, silence_logs=logging.CRITICAL, env=threads,
                        preload=["ssh_toolkit.executors.worker"])


class DaskExecutor(Executor):
    name = "dask"

    def __init__(self, scheduler: str | None = None, *, n_workers: int | None = None,
                 images_per_task: int = IMAGES_PER_TASK, window: int | None = None) -> None:
        require_distributed()
        if scheduler is not None:
            check_address(scheduler)
        if images_per_task < 1:
            raise UsageError(f"images per task must be at least 1, got {images_per_task}")
        self.scheduler = scheduler
        self.n_workers = n_workers or local_cores()
        self.images_per_task = images_per_task
        self.window = window
        self.cluster = None
        self._client = None
        self._shipped: dict[str, object] = {}  # model key -> future of its files on every worker

    # -------------------------------------------------------------------------------------------- the cluster
    @property
    def client(self):
        """The Dask client, connected (or the local cluster started) on first use."""
        if self._client is None:
            from distributed import Client

            # As for the local cluster's workers (silence_logs): a client whose scheduler went away logs its
            # reconnection attempts as tracebacks; what goes wrong reaches the driver as the tasks' exceptions and
            # is said in one line.
            for name in ["distributed", *logging.root.manager.loggerDict]:
                if name.split(".")[0] == "distributed":  # Dask sets the levels of some of them itself
                    logging.getLogger(name).setLevel(logging.CRITICAL)
            if self.scheduler:
                try:
                    self._client = Client(self.scheduler, timeout="30s")
                except ValueError as e:  # an address Dask cannot use (checked up front for the usual schemes)
                    raise UsageError(f"--scheduler {self.scheduler}: {' '.join(str(e).split())}") from None
                except (OSError, TimeoutError) as e:
                    raise EnvironmentProblem(f"{self.scheduler}: cannot reach the Dask scheduler: "
                                             f"{' '.join(str(e).split()) or type(e).__name__}") from None
            else:
                self.cluster = local_cluster(self.n_workers)
                self._client = Client(self.cluster)
        return self._client

    def close(self) -> None:
        self._shipped.clear()
        for thing in (self._client, self.cluster):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - a cluster already gone (Ctrl-C reached its workers) is closed
                    pass
        self._client = self.cluster = None

    def _files(self, model: ModelUnderTest):
        """The model's files on every worker (scattered once per command; a worker that joins later fetches
        them from a peer)."""
        if model.key not in self._shipped:
            if model.spec is None:
                raise UsageError(f"{model.name}: this model cannot run on a Dask worker (no runner spec)")
            files = {p.name: Path(p).read_bytes() for p in model.spec.files}
            # One future for the whole dict (scattering a dict would make its file names the cluster's keys,
            # shared by every model's sshb.xml).
            [self._shipped[model.key]] = self.client.scatter([files], broadcast=True, hash=False)
        return self._shipped[model.key]

    def threads(self) -> int:
        """Worker threads the scheduler knows of now (at least 1)."""
        info = self.client.scheduler_info()
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))

    # -------------------------------------------------------------------------------------------- inference
    def infer(self, card: ModelCard, model: ModelUnderTest, paths: Sequence[Path], todo: Sequence[int], size: int,
              store: Store) -> None:
        from distributed import as_completed

        from ..model.outputs import RawOutputs
        from .worker import infer_batch

        client = self.client
        files = self._files(model)
        preprocess = card.preprocess[model.side]
        batches = iter([list(todo[k:k + self.images_per_task]) for k in range(0, len(todo), self.images_per_task)])
        window = self.window or 2 * self.threads()
        pending = as_completed()
        tag = uuid.uuid4().hex[:8]

        inflight: set = set()

        def submit() -> bool:
            batch = next(batches, None)
            if batch is None:
                return False
            items = [(i, str(paths[i]), Path(paths[i]).read_bytes()) for i in batch]
            future = client.submit(infer_batch, model.key, model.spec, files, preprocess, size, items,
                                   key=f"ssh-toolkit-{model.name}-{tag}-{batch[0]}", pure=False)
            inflight.add(future)
            pending.add(future)
            return True

        try:
            for _ in range(window):
                if not submit():
                    break
            for future in pending:
                for i, arrays, seconds, hw in self._result(future, model):
                    store(i, RawOutputs(arrays, model.name, seconds), hw)
                inflight.discard(future)
                future.release()
                submit()
        except BaseException:
            # Ctrl-C, or a task failed: nothing more of this model is wanted from the cluster; what is
            # stored stays in the cache.
            if inflight:
                try:
                    client.cancel(list(inflight))
                except Exception:  # noqa: BLE001 - the scheduler is gone: nothing is left to cancel there
                    pass
            raise

    def _result(self, future, model: ModelUnderTest):
        from concurrent.futures import CancelledError

        from distributed import KilledWorker

        try:
            return future.result()
        except KilledWorker as e:
            raise BackendError(f"{model.name}: Dask workers died running the same task repeatedly ({e}); see the "
                               f"workers' logs") from None
        except CancelledError as e:  # the scheduler went away (or cancelled the work) mid-run
            where = self.scheduler or "the local Dask cluster"
            raise EnvironmentProblem(f"{where}: the Dask cluster dropped {model.name}'s work "
                                     f"({' '.join(str(e).split())}); what is cached is kept: run the same command "
                                     f"again, on this cluster or with --executor local, to finish") from None
