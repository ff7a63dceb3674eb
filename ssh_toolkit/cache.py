"""The cache of raw outputs: ``<workspace>/cache/raw/<model key>/<image sha[:2]>/<image sha>.npz``.

One entry per model and image, written atomically as soon as the image's outputs exist, so an interrupted run
resumes where it stopped and a re-run re-scores without inference.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from .errors import InputDataError
from .fileio import atomic_path, sha256_file
from .model.outputs import RawOutputs

CACHE_VERSION = 1  # bump when the layout of a cache entry changes


class CacheEntryError(InputDataError):
    """A cache entry cannot be read or is not what the model produces; the message names the file."""


# What a valid entry holds: each output's shape, None where any size is fine (e.g. {name: (1, None, 16, 16)}).
EntrySpec = Mapping[str, tuple[int | None, ...]]


def _shape_text(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def entry_problem(arrays: Mapping[str, np.ndarray], hw: Sequence[int], expected: EntrySpec | None) -> str | None:
    """What is wrong with an entry's arrays (an output missing, of another shape, empty, not finite), or None."""
    if len(hw) != 2 or min(hw) <= 0:
        return f"original image size {list(hw)} is not two positive numbers"
    for name, shape in (expected or {}).items():
        if name not in arrays:
            return f"lacks output {name}"
        a = arrays[name]
        if a.ndim != len(shape) or any(e is not None and d != e for d, e in zip(a.shape, shape)) or a.size == 0:
            return f"output {name} has shape {tuple(a.shape)}, expected {_shape_text(shape)}"
        if not np.issubdtype(a.dtype, np.floating):
            return f"output {name} has dtype {a.dtype}, expected floating point"
        if not np.isfinite(a).all():
            return f"output {name} holds non-finite values"
    return None


class RawCache:
    def __init__(self, root: Path, model_key: str, expected: EntrySpec | None = None) -> None:
        self.dir = root / "raw" / model_key
        self.expected = expected  # checked whenever an entry is read

    def path(self, image_key: str) -> Path:
        return self.dir / image_key[:2] / f"{image_key}.npz"

    def has(self, image_key: str) -> bool:
        return self.path(image_key).is_file()

    def put(self, image_key: str, raw: RawOutputs, orig_hw: tuple[int, int]) -> None:
        """Write the entry atomically: concurrent writers of the same entry both succeed, an interruption
        (Ctrl-C, a full disk) leaves no entry and nothing half-closed behind."""
        arrays = {"__orig_hw": np.asarray(orig_hw), "__seconds": np.asarray(raw.seconds), **raw.arrays}
        with atomic_path(self.path(image_key)) as tmp:
            # The .npz layout of np.savez, but with the zip closed by `with` even when interrupted: np.savez
            # leaves its ZipFile open on an exception, and its later garbage collection wrote to the closed file
            # ("Exception ignored ... seek of closed file" printed after the one-line Ctrl-C message).
            with open(tmp, "wb") as f, zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED) as zf:
                for name, value in arrays.items():
                    with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)

    def _read(self, image_key: str, runner: str) -> tuple[RawOutputs, tuple[int, int]]:
        """The entry, or CacheEntryError saying what is wrong with it (unreadable, or not what ``expected`` says)."""
        path = self.path(image_key)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if not k.startswith("__")}
                hw = tuple(int(v) for v in z["__orig_hw"])
                seconds = float(z["__seconds"])
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as e:
            raise CacheEntryError(f"{path}: corrupt cache entry ({type(e).__name__})") from None
        problem = entry_problem(arrays, hw, self.expected)
        if problem:
            raise CacheEntryError(f"{path}: {problem}")
        return RawOutputs(arrays, runner, seconds), hw  # type: ignore[return-value]

    def problem(self, image_key: str) -> str | None:
        """None when the entry is present and valid, else what is wrong with it (a missing entry is no problem
        here: :meth:`has` says whether it exists)."""
        if not self.has(image_key):
            return None
        try:
            self._read(image_key, "")
        except CacheEntryError as e:
            return str(e)
        return None

    def discard(self, image_key: str) -> None:
        """Delete a bad entry (a file in the toolkit's cache layout; nothing else is ever at that path)."""
        self.path(image_key).unlink(missing_ok=True)

    def get(self, image_key: str, runner: str) -> tuple[RawOutputs, tuple[int, int]]:
        try:
            return self._read(image_key, runner)
        except CacheEntryError as e:
            # Checked before inference (inference.infer_missing), so this is damage since then: drop the entry
            # so that the next run infers it again.
            self.discard(image_key)
            raise CacheEntryError(f"{e}; deleted it, run the same command again to infer that image again") from None


def image_keys(paths: Sequence[Path], progress: bool) -> list[str]:
    return [sha256_file(p) for p in tqdm(paths, desc="hash images", unit="img", disable=not progress,
                                         leave=False)]
