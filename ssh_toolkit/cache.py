"""The cache of raw outputs: ``<workspace>/cache/raw/<model key>/<image sha[:2]>/<image sha>.npz``.

One entry per model and image, written atomically as soon as the image's outputs exist, so an interrupted run
resumes where it stopped and a re-run re-scores without inference.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from .errors import InputDataError
from .fileio import atomic_path, sha256_file
from .model.outputs import RawOutputs

CACHE_VERSION = 1  # bump when the layout of a cache entry changes


class RawCache:
    def __init__(self, root: Path, model_key: str) -> None:
        self.dir = root / "raw" / model_key

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

    def get(self, image_key: str, runner: str) -> tuple[RawOutputs, tuple[int, int]]:
        path = self.path(image_key)
        try:
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files if not k.startswith("__")}
                hw = tuple(int(v) for v in z["__orig_hw"])
                seconds = float(z["__seconds"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            # Entries are written atomically, so this is outside damage: drop it so the next run re-infers it.
            path.unlink(missing_ok=True)
            raise InputDataError(f"{path}: corrupt cache entry ({type(e).__name__}); deleted it, run the same "
                                 f"command again to re-infer that image") from None
        return RawOutputs(arrays, runner, seconds), hw  # type: ignore[return-value]


def image_keys(paths: Sequence[Path], progress: bool) -> list[str]:
    return [sha256_file(p) for p in tqdm(paths, desc="hash images", unit="img", disable=not progress,
                                         leave=False)]
