"""Writing an MXNet checkpoint (symbol JSON + params) reproducibly and atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..fileio import atomic_dir, library_write_error, sha256_file
from ..workspace import Checkpoint


def save_checkpoint(symbol, arg_params: Mapping[str, np.ndarray], aux_params: Mapping[str, np.ndarray],
                    directory: str | Path, prefix: str, epoch: int, kind: str, seed: int | None) -> Checkpoint:
    """Write ``<prefix>-symbol.json``, ``<prefix>-<epoch:04d>.params`` and ``checkpoint.json`` into ``directory``.

    Parameters are saved in sorted key order as float32 so the same inputs give byte-identical files.
    The directory is replaced as a whole, so an interrupted write leaves the old one (or none).
    """
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    directory = Path(directory)
    with atomic_dir(directory, kind="checkpoint") as tmp:
        (tmp / f"{prefix}-symbol.json").write_text(symbol.tojson(), encoding="utf-8")
        blob = {f"arg:{k}": mx.nd.array(np.asarray(arg_params[k], np.float32), dtype="float32")
                for k in sorted(arg_params)}
        blob.update({f"aux:{k}": mx.nd.array(np.asarray(aux_params[k], np.float32), dtype="float32")
                     for k in sorted(aux_params)})
        params = tmp / f"{prefix}-{epoch:04d}.params"
        try:
            mx.nd.save(str(params), blob)
        except mx.base.MXNetError as e:  # MXNet's writer gives no errno: "FileStream.Write incomplete"
            reason = str(e).strip().splitlines()[-1].rpartition(": ")[2] if str(e).strip() else type(e).__name__
            raise library_write_error(params, sum(a.size * 4 for a in blob.values()), f"MXNet: {reason}") from None
        ck = Checkpoint(directory, prefix, epoch, kind, sha256_file(params), seed)
        Checkpoint(tmp, prefix, epoch, kind, ck.params_sha256, seed).save()
    return ck
