"""The reference runner: the original MXNet checkpoint, batch 1, on the CPU."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import BackendError, InputDataError
from ..workspace import Checkpoint
from .base import Runner


def checkpoint_prefix(checkpoint: Checkpoint) -> str:
    """The path prefix ``mx.model.load_checkpoint`` takes. MXNet encodes it as UTF-8: a folder whose name is not
    UTF-8 is an InputDataError naming the file (it raised UnicodeEncodeError, a traceback)."""
    prefix = str(checkpoint.directory / checkpoint.prefix)
    try:
        prefix.encode("utf-8")
    except UnicodeEncodeError:
        shown = str(checkpoint.params_path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise InputDataError(f"{shown}: MXNet cannot open a path that is not UTF-8; move or rename the folder"
                             ) from None
    return prefix


class MXNetRunner(Runner):
    def __init__(self, checkpoint: Checkpoint, input_name: str, input_size: int,
                 expected_outputs: Sequence[str]) -> None:
        super().__init__(expected_outputs)
        self.checkpoint = checkpoint
        self.input_name = input_name
        self.input_size = input_size
        self.name = "mxnet"
        self._exe = None
        self._names: list[str] = []

    def _activate(self) -> None:
        from .mxnet_import import import_mxnet

        mx = import_mxnet()

        ck = self.checkpoint
        try:
            sym, args, auxs = mx.model.load_checkpoint(checkpoint_prefix(ck), ck.epoch)
            shape = (1, 3, self.input_size, self.input_size)
            exe = sym.simple_bind(mx.cpu(), grad_req="null", **{self.input_name: shape})
        except mx.base.MXNetError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"{ck.params_path}: MXNet cannot load the checkpoint: {first}") from None
        for name, arr in exe.arg_dict.items():
            if name == self.input_name:
                continue
            if name not in args:
                raise BackendError(f"{ck.params_path}: no weights for argument {name!r}")
            args[name].copyto(arr)
        for name, arr in exe.aux_dict.items():
            auxs[name].copyto(arr)
        self._exe = exe
        self._names = sym.list_outputs()

    def _infer(self, tensor: np.ndarray) -> Mapping[str, np.ndarray]:
        from .mxnet_import import import_mxnet

        mx = import_mxnet()

        exe = self._exe
        if tensor.shape != exe.arg_dict[self.input_name].shape:
            raise BackendError(f"mxnet: input shape {tensor.shape} != bound {exe.arg_dict[self.input_name].shape}")
        exe.arg_dict[self.input_name][:] = mx.nd.array(tensor, dtype="float32")
        outs = exe.forward(is_train=False)
        return {n: o.asnumpy() for n, o in zip(self._names, outs)}

    def _deactivate(self) -> None:
        self._exe = None
