"""Small MXNet checkpoint files for tests, written with struct/json only (independent of the code under test)."""

from __future__ import annotations

import json
import struct

import numpy as np


def symbol_json(weights: tuple[str, ...] = ("conv_weight", "conv_bias"), kernel: int = 16, filters: int = 25) -> bytes:
    """A one-convolution MXNet symbol graph: data -> Convolution(weights...) -> output."""
    nodes = [{"op": "null", "name": "data", "inputs": []}]
    nodes += [{"op": "null", "name": w, "inputs": []} for w in weights]
    nodes.append({"op": "Convolution", "name": "conv",
                  "attrs": {"kernel": f"({kernel}, {kernel})", "num_filter": str(filters)},
                  "inputs": [[i, 0, 0] for i in range(len(nodes))]})
    return json.dumps({"nodes": nodes, "arg_nodes": list(range(len(weights) + 1)),
                       "heads": [[len(nodes) - 1, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}).encode()


def nd_list(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes mx.nd.save writes for a dict of float32 arrays (NDArray list, V2, dense, cpu)."""
    out = [struct.pack("<QQQ", 0x112, 0, len(arrays))]
    for a in arrays.values():
        out.append(struct.pack(f"<IiI{a.ndim}qiii", 0xF993FAC9, 0, a.ndim, *a.shape, 1, 0, 0))
        out.append(a.astype("<f4").tobytes())
    out.append(struct.pack("<Q", len(arrays)))
    out += [struct.pack("<Q", len(k)) + k.encode() for k in arrays]
    return b"".join(out)
