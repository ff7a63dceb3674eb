"""Where the toolkit keeps checkpoints, IRs, datasets and caches, and the Checkpoint record.

Layout under the workspace root (default ``./workspace``, or ``$SSH_TOOLKIT_WORKSPACE``)::

    downloads/<archive>(.part)           real checkpoint archive
    checkpoints/<kind>/                  kind: real | standin | toy; <prefix>-symbol.json, <prefix>-0000.params,
                                         checkpoint.json (the Checkpoint record)
    ir/<kind>-<size>/<precision>/        <prefix>.xml/.bin + conversion.json (Model Optimizer)
    ir/<kind>-<size>/native/<precision>/ the same, made by the native route (convert --route native)
    data/wider-sample/                   the generated WIDER-layout sample dataset
    cache/raw/<model key>/<sha[:2]>/<image sha>.npz   per-image raw outputs cached by evaluate
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import InputDataError

CHECKPOINT_KINDS = ("real", "standin", "toy")


def default_root() -> Path:
    return Path(os.environ.get("SSH_TOOLKIT_WORKSPACE") or "workspace")  # set but empty: as if unset


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def default(cls) -> "Workspace":
        return cls(default_root())

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    def checkpoint_dir(self, kind: str) -> Path:
        if kind not in CHECKPOINT_KINDS:
            raise InputDataError(f"unknown checkpoint kind {kind!r}; expected one of {CHECKPOINT_KINDS}")
        return self.root / "checkpoints" / kind

    def ir_dir(self, kind: str, size: int | str, precision: str, route: str = "mo") -> Path:
        """``ir/<kind>-<size>/<precision>`` (Model Optimizer), ``ir/<kind>-<size>/native/<precision>`` (native route)."""
        base = self.root / "ir" / f"{kind}-{size}"
        return base / precision if route == "mo" else base / route / precision

    @property
    def sample_data(self) -> Path:
        return self.root / "data" / "wider-sample"

    @property
    def cache(self) -> Path:
        return self.root / "cache"


def weights_of(kind: str) -> str:
    """``real`` for the downloaded checkpoint, ``standin`` for every generated one."""
    return "real" if kind == "real" else "standin"


@dataclass(frozen=True)
class Checkpoint:
    """An MXNet checkpoint on disk. ``weights`` is "real" or "standin"; ``kind`` says which stand-in."""

    directory: Path
    prefix: str
    epoch: int
    kind: str  # real | standin | toy
    params_sha256: str
    seed: int | None = None

    RECORD = "checkpoint.json"

    @property
    def weights(self) -> str:
        return weights_of(self.kind)

    @property
    def is_standin(self) -> bool:
        return self.kind != "real"

    @property
    def symbol_path(self) -> Path:
        return self.directory / f"{self.prefix}-symbol.json"

    @property
    def params_path(self) -> Path:
        return self.directory / f"{self.prefix}-{self.epoch:04d}.params"

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("directory")
        d["weights"] = self.weights
        return d

    def save(self) -> Path:
        from .fileio import write_json

        return write_json(self.directory / self.RECORD, self.to_json())

    def validate(self, input_name: str = "data") -> None:
        """Check both files parse as an MXNet checkpoint whose params hold every argument of the symbol.

        Reads the symbol and the params headers only (no MXNet, no weight data); raises InputDataError naming
        the file and what is wrong (see :func:`ssh_toolkit.mxnet_format.check_checkpoint`).
        """
        from .mxnet_format import check_checkpoint

        check_checkpoint(self.symbol_path, self.params_path, input_name)

    @classmethod
    def load(cls, directory: str | Path, *, validate: bool = True) -> "Checkpoint":
        """The checkpoint recorded in ``directory``; with ``validate``, its files are checked (:meth:`validate`) and
        the params file must still be the one recorded (:meth:`check_unchanged`)."""
        directory = Path(directory)
        rec = directory / cls.RECORD
        if not rec.is_file():
            raise InputDataError(f"{rec}: no checkpoint record; run 'ssh-toolkit download' or 'synthesize' first")
        try:
            d = json.loads(rec.read_text())
            ck = cls(directory, d["prefix"], int(d["epoch"]), d["kind"], d["params_sha256"], d.get("seed"))
        except (ValueError, KeyError, TypeError) as e:
            raise InputDataError(f"{rec}: corrupt checkpoint record ({e})") from None
        for p in (ck.symbol_path, ck.params_path):
            if not p.is_file():
                raise InputDataError(f"{p}: missing; the checkpoint in {directory} is incomplete")
        if validate:
            ck.validate()
            ck.check_unchanged()
        return ck

    def check_unchanged(self) -> None:
        """InputDataError unless the params file still has the sha256 the record names (an edited checkpoint
        would pair stale IRs with new weights)."""
        from .fileio import sha256_file

        if sha256_file(self.params_path) != self.params_sha256:
            if self.kind == "real":
                hint = "'ssh-toolkit download --archive ARCHIVE' (or --from-dir DIR)"
            else:
                seed = f" --seed {self.seed}" if self.seed is not None else ""
                hint = f"'ssh-toolkit synthesize --kind {self.kind}{seed}'"
            raise InputDataError(f"{self.params_path}: changed since the checkpoint was recorded (sha256 differs from "
                                 f"the params_sha256 of {self.directory / self.RECORD}); make it again with {hint}")
