"""Where inference runs: here (``local``) or on a Dask cluster (``dask``), behind one small interface.

An executor takes one model and the images it still lacks and hands every image's raw outputs, with the
image's original size, to ``store(i, raw, (h, w))`` on the caller's thread; ``inference.infer_missing`` writes
them into the cache. So resume, re-scoring and the reports do not depend on where inference ran, and a run
started on a cluster can be finished locally (and the other way round).

``local`` is what the toolkit always did: decode, resize and preprocess here and feed the runner's
``infer_many``. ``dask`` ships the model files and the image bytes to the workers (``executors.dask``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

if TYPE_CHECKING:
    from ..card import ModelCard
    from ..inference import ModelUnderTest
    from ..model.outputs import RawOutputs

EXECUTOR_CHOICES = ("local", "dask")
Store = Callable[[int, "RawOutputs", tuple[int, int]], None]


class Executor:
    """Runs one model over images; a context manager so a cluster it starts is stopped again."""

    name = "executor"

    def infer(self, card: ModelCard, model: ModelUnderTest, paths: Sequence[Path], todo: Sequence[int], size: int,
              store: Store) -> None:
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional hook: the local executor holds nothing
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def feed(card: ModelCard, side: str, paths: Sequence[Path], todo: Sequence[int], size: int,
         hw_of: dict[int, tuple[int, int]]) -> Iterator[tuple[int, object]]:
    """(index, input tensor) for every image of ``todo``, read from ``paths`` and preprocessed for ``side``."""
    from ..data.wider import read_image
    from ..model.preprocess import resize, to_tensor

    preprocess = card.preprocess[side]
    for i in todo:
        image = read_image(paths[i])
        hw_of[i] = image.shape[:2]
        yield i, to_tensor(resize(image, size).image, preprocess)


class LocalExecutor(Executor):
    """This process: the runner's ``infer_many`` over images decoded here (decoding overlaps inference)."""

    name = "local"

    def infer(self, card: ModelCard, model: ModelUnderTest, paths: Sequence[Path], todo: Sequence[int], size: int,
              store: Store) -> None:
        hw_of: dict[int, tuple[int, int]] = {}
        with model.make_runner() as runner:
            runner.infer_many(feed(card, model.side, paths, todo, size, hw_of),
                              lambda i, raw: store(i, raw, hw_of.pop(i)))


def open_executor(kind: str = "local", scheduler: str | None = None, **options) -> Executor:
    """The executor ``kind`` (``local`` | ``dask``); for ``dask``, the scheduler at ``scheduler`` (e.g.
    ``tcp://host:8786``) or, without one, a local cluster on 127.0.0.1 with one worker per core (started when
    there is work). EnvironmentProblem (exit 3) when Dask is not installed."""
    from ..errors import UsageError

    if kind not in EXECUTOR_CHOICES:
        raise UsageError(f"--executor {kind!r}: expected one of {', '.join(EXECUTOR_CHOICES)}")
    if kind == "local":
        if scheduler:
            raise UsageError("--scheduler needs --executor dask")
        return LocalExecutor()
    from .cluster import DaskExecutor

    return DaskExecutor(scheduler, **options)
