"""MXNet checkpoint files read without MXNet: the symbol JSON and the NDArray-list ``.params`` binary.

An MXNet checkpoint is two files, ``<prefix>-symbol.json`` (the graph) and ``<prefix>-<epoch:04d>.params``
(the weights, as ``mx.nd.save`` writes a dict). This module parses both in pure Python/numpy so the toolkit can
validate a checkpoint cheaply, before Model Optimizer or MXNet ever see it, and so a converter can read the
weights without starting MXNet.

**Symbol JSON** (MXNet >= 0.9, the NNVM graph)::

    {"nodes": [{"op": "null", "name": "data", "inputs": []},
               {"op": "null", "name": "conv1_weight", "attrs": {...}, "inputs": []},
               {"op": "Convolution", "name": "conv1", "attrs": {"kernel": "(3, 3)", "num_filter": "64"},
                "inputs": [[0, 0, 0], [1, 0, 0], [2, 0, 0]]}, ...],
     "arg_nodes": [0, 1, ...],            # indices of the variables ("null" nodes)
     "heads": [[node, output, version], ...],
     "attrs": {"mxnet_version": ["int", 10901]}}

Nodes come in topological order (an input refers to an earlier node). Attributes are under ``attrs``
(``attr`` or ``param`` in files from older MXNet versions), with string values. The variables are the graph's
inputs: the data input, the learned *arguments* (``arg:`` entries of the params file) and the *auxiliary
states* (``aux:`` entries, e.g. BatchNorm's moving mean and variance, known here from the ops that own them).

**NDArray list** (``.params``), little-endian::

    uint64 0x112                          list magic
    uint64 0                              reserved
    uint64 N                              number of arrays, then N arrays:
        uint32 magic                      0xF993FAC9 (V2) | 0xF993FACA (V3, NumPy shape semantics)
                                          | 0xF993FAC8 (V1) | anything else: the ndim of a pre-V1 array
        int32  storage type               V2/V3 only: 0 dense (1 row_sparse, 2 csr: not supported here)
        int32  ndim, int64 dim[ndim]      (pre-V1: uint32 ndim, uint32 dim[ndim])
                                          no shape (V1/V2 ndim 0, V3 ndim -1): the array ends here
        int32  dev_type, int32 dev_id     the context it was saved from (ignored)
        int32  dtype flag                 0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64,
                                          7 bool, 8 int16, 9 uint16, 10 uint32, 11 uint64
        bytes  data                       prod(dim) * itemsize, C order
    uint64 K                              number of names: 0 (a saved list) or N (a saved dict), then K times
        uint64 length, bytes name (UTF-8) "arg:<name>" or "aux:<name>" in a checkpoint

Every problem is a :class:`MXNetFormatError` (an :class:`InputDataError`, exit 2) whose one-line message names
the file and the real reason: ``not JSON at line 1, column 1``, ``truncated at byte 120``, ``no weights for
conv4_2_weight``. :func:`check_checkpoint` validates a pair of files; :func:`read_params_index` reads only the
headers (it seeks past the data) so that validation stays cheap on an 80 MB file.
"""

from __future__ import annotations

import contextlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Sequence

import numpy as np

from .errors import InputDataError

LIST_MAGIC = 0x112
V1_MAGIC = 0xF993FAC8
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
DENSE = 0
STORAGE_NAMES = {-1: "undefined", 0: "dense", 1: "row_sparse", 2: "csr"}
DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("<f8"), 2: np.dtype("<f2"), 3: np.dtype("u1"), 4: np.dtype("<i4"),
    5: np.dtype("i1"), 6: np.dtype("<i8"), 7: np.dtype("?"), 8: np.dtype("<i2"), 9: np.dtype("<u2"),
    10: np.dtype("<u4"), 11: np.dtype("<u8"),
}
DEV_TYPES = frozenset({1, 2, 3, 5})  # cpu, gpu, cpu_pinned, cpu_shared
ARG_PREFIX = "arg:"
AUX_PREFIX = "aux:"
_MAX_NDIM = 32  # MXNet's limit; a larger pre-V1 "ndim" means the magic is garbage
# Inputs of these ops that are auxiliary states (saved as "aux:"), by input position.
AUX_INPUTS: dict[str, tuple[int, ...]] = {
    "BatchNorm": (3, 4),
    "BatchNorm_v1": (3, 4),
    "CuDNNBatchNorm": (3, 4),
    "_contrib_SyncBatchNorm": (3, 4),
    "_contrib_BatchNormWithReLU": (3, 4),
}
_ATTR_KEYS = ("attrs", "attr", "param")  # where MXNet versions keep node attributes


class MXNetFormatError(InputDataError):
    """A checkpoint file that is not what MXNet would write. ``reason`` is the message without the path."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = " ".join(reason.split())


# --------------------------------------------------------------------------------------------------------------
# Symbol JSON


@dataclass(frozen=True)
class SymbolNode:
    """One node of the graph: ``op`` is ``"null"`` for a variable; ``inputs`` are ``(node, output)`` pairs."""

    op: str
    name: str
    inputs: tuple[tuple[int, int], ...]
    attrs: Mapping[str, str]

    @property
    def is_variable(self) -> bool:
        return self.op == "null"


@dataclass(frozen=True)
class SymbolInfo:
    """What :func:`read_symbol` found in a symbol JSON file.

    arguments         learned variables, in node order, that the params file holds as ``arg:<name>``
    auxiliary_states  variables the params file holds as ``aux:<name>`` (BatchNorm running statistics)
    data_inputs       the variables named in ``data_names`` that the graph has (normally ``("data",)``)
    heads             ``(node name, output index)`` of each graph output, in order
    shapes            per variable, the shape its consumer implies where that is cheap to know; ``None`` marks a
                      dimension that would need full shape inference
    mxnet_version     the ``mxnet_version`` attribute of the file (e.g. 10901 for 1.9.1), or None
    """

    path: Path
    nodes: tuple[SymbolNode, ...]
    arguments: tuple[str, ...]
    auxiliary_states: tuple[str, ...]
    data_inputs: tuple[str, ...]
    heads: tuple[tuple[str, int], ...]
    shapes: Mapping[str, tuple[int | None, ...]]
    mxnet_version: int | None


def read_symbol(path: str | Path, data_names: Sequence[str] = ("data",)) -> SymbolInfo:
    """Parse ``path`` and check it is an MXNet symbol graph; raise :class:`MXNetFormatError` if not.

    Checked: valid UTF-8 JSON; an object with a ``nodes`` list of ``{op, name, inputs}`` objects whose inputs
    refer to earlier nodes, an ``arg_nodes`` list of variable indices and a non-empty ``heads`` list of node
    references. ``data_names`` are the graph inputs that are fed rather than learned.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if not raw.strip():
        raise MXNetFormatError(path, f"empty file ({len(raw)} bytes); expected an MXNet symbol JSON")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MXNetFormatError(path, f"not JSON: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); "
                                     f"expected an MXNet symbol JSON") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise MXNetFormatError(path, f"not JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise MXNetFormatError(path, "not an MXNet symbol: JSON nested too deeply") from None

    def bad(what: str) -> MXNetFormatError:
        return MXNetFormatError(path, f"not an MXNet symbol JSON: {what}")

    if not isinstance(doc, dict):
        raise bad(f"expected an object at the top level, got {_json_type(doc)}")
    for key in ("nodes", "arg_nodes", "heads"):
        if key not in doc:
            raise bad(f"no {key!r} key")
        if not isinstance(doc[key], list):
            raise bad(f"{key!r} is {_json_type(doc[key])}, expected a list")
    if not doc["nodes"]:
        raise bad("'nodes' is empty")

    nodes: list[SymbolNode] = []
    for i, node in enumerate(doc["nodes"]):
        if not isinstance(node, dict):
            raise bad(f"node {i} is {_json_type(node)}, expected an object")
        for key in ("op", "name"):
            if not isinstance(node.get(key), str):
                raise bad(f"node {i} has no string {key!r}")
        inputs = node.get("inputs")
        if not isinstance(inputs, list):
            raise bad(f"node {i} ({node['name']}) has no 'inputs' list")
        refs = tuple(_node_ref(ref, i, limit=i, what=f"node {i} ({node['name']}) input {k}", bad=bad)
                     for k, ref in enumerate(inputs))
        attrs: dict[str, str] = {}
        for key in _ATTR_KEYS:
            value = node.get(key)
            if isinstance(value, dict):
                attrs.update({str(k): str(v) for k, v in value.items()})
        nodes.append(SymbolNode(node["op"], node["name"], refs, attrs))

    for k, index in enumerate(doc["arg_nodes"]):
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(nodes):
            raise bad(f"arg_nodes[{k}] = {index!r} is not a node index")
        if not nodes[index].is_variable:
            raise bad(f"arg_nodes[{k}] = {index} is node {nodes[index].name!r} of op {nodes[index].op!r}, "
                      f"not a variable")
    if not doc["heads"]:
        raise bad("'heads' is empty (the graph has no output)")
    heads = [_node_ref(ref, -1, limit=len(nodes), what=f"heads[{k}]", bad=bad) for k, ref in enumerate(doc["heads"])]

    variables = [n.name for n in nodes if n.is_variable]
    seen: set[str] = set()
    for name in variables:
        if name in seen:
            raise bad(f"two variables are named {name!r}")
        seen.add(name)
    aux = _auxiliary_states(nodes)
    data = tuple(n for n in variables if n in set(data_names))
    arguments = tuple(n for n in variables if n not in aux and n not in data)
    return SymbolInfo(
        path=path,
        nodes=tuple(nodes),
        arguments=arguments,
        auxiliary_states=tuple(n for n in variables if n in aux),
        data_inputs=data,
        heads=tuple((nodes[node].name, index) for node, index in heads),
        shapes=_implied_shapes(nodes),
        mxnet_version=_mxnet_version(doc.get("attrs")),
    )


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _node_ref(ref: Any, node: int, *, limit: int, what: str,
              bad: Callable[[str], MXNetFormatError]) -> tuple[int, int]:
    """``[node, output(, version)]`` -> ``(node, output)``; the node must be below ``limit``."""
    if (not isinstance(ref, list) or not 2 <= len(ref) <= 3
            or any(isinstance(x, bool) or not isinstance(x, int) for x in ref)):
        raise bad(f"{what} is {ref!r}, expected [node, output, version]")
    if not 0 <= ref[0] < limit:
        where = "an earlier node" if node >= 0 else "a node"
        raise bad(f"{what} refers to node {ref[0]}, which is not {where}")
    if ref[1] < 0:
        raise bad(f"{what} refers to output {ref[1]} of node {ref[0]}")
    return ref[0], ref[1]


def _auxiliary_states(nodes: Sequence[SymbolNode]) -> set[str]:
    aux: set[str] = set()
    for n in nodes:
        for position in AUX_INPUTS.get(n.op, ()):
            if position < len(n.inputs) and nodes[n.inputs[position][0]].is_variable:
                aux.add(nodes[n.inputs[position][0]].name)
    return aux


def _tuple_attr(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        value = tuple(int(x) for x in text.strip().strip("()[]").replace(",", " ").split())
    except ValueError:
        return None
    return value


def _int_attr(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _implied_shapes(nodes: Sequence[SymbolNode]) -> dict[str, tuple[int | None, ...]]:
    """Shapes of variables that their own ``__shape__`` or a consumer's attributes fix, without inference.

    Convolution: weight ``(num_filter, ?, *kernel)``, bias ``(num_filter,)``; Deconvolution: weight
    ``(?, num_filter / num_group, *kernel)``, bias ``(num_filter,)``; FullyConnected: weight
    ``(num_hidden, ?)`` (``?`` when flatten is off), bias ``(num_hidden,)``; BatchNorm: 1-D gamma, beta, mean,
    variance. Only channel-first layouts (the default) are handled; other layouts imply nothing.
    """
    shapes: dict[str, tuple[int | None, ...]] = {}
    for n in nodes:
        if n.is_variable:
            declared = _tuple_attr(n.attrs.get("__shape__"))
            if declared:  # legacy convention: 0 = unknown
                shapes[n.name] = tuple(d if d > 0 else None for d in declared)
    for n in nodes:
        implied: dict[int, tuple[int | None, ...]] = {}
        layout = n.attrs.get("layout", "NC")
        if n.op in ("Convolution", "Deconvolution") and layout.startswith("NC"):
            kernel = _tuple_attr(n.attrs.get("kernel"))
            filters = _int_attr(n.attrs.get("num_filter"))
            groups = _int_attr(n.attrs.get("num_group", "1")) or 1
            if kernel and filters:
                if n.op == "Convolution":
                    implied[1] = (filters, None, *kernel)
                elif filters % groups == 0:
                    implied[1] = (None, filters // groups, *kernel)
                implied[2] = (filters,)
        elif n.op == "FullyConnected":
            hidden = _int_attr(n.attrs.get("num_hidden"))
            if hidden:
                implied[1] = (hidden, None)
                implied[2] = (hidden,)
        elif n.op in AUX_INPUTS:
            implied.update({k: (None,) for k in (1, 2, 3, 4)})
        for position, shape in implied.items():
            if position < len(n.inputs):
                var = nodes[n.inputs[position][0]]
                if var.is_variable and var.name not in shapes:
                    shapes[var.name] = shape
    return shapes


def _mxnet_version(attrs: Any) -> int | None:
    if isinstance(attrs, dict):
        v = attrs.get("mxnet_version")
        if isinstance(v, list) and len(v) == 2 and isinstance(v[1], int) and not isinstance(v[1], bool):
            return v[1]
    return None


# --------------------------------------------------------------------------------------------------------------
# NDArray list (.params)


@dataclass(frozen=True)
class ArrayInfo:
    """One array of a params file, without its data: where the data is and what it holds."""

    name: str  # as saved, with its "arg:"/"aux:" prefix ("" in a file saved from a list)
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int  # byte offset of the raw data in the file
    nbytes: int


def read_params_index(path: str | Path) -> dict[str, ArrayInfo]:
    """Read the headers of every array and the names, seeking past the data: cheap validation of a params file.

    Raises :class:`MXNetFormatError` for anything :func:`read_params` would not read: a wrong magic, a truncated
    file, a sparse or shapeless array, an unknown dtype, trailing bytes, missing or duplicate names.
    """
    path = Path(path)
    with _reading(path, "an MXNet params file"):
        size = path.stat().st_size
        with open(path, "rb") as f:
            return _parse_index(path, f, size)


def read_params(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: array}`` in file order, names with their ``arg:``/``aux:`` prefixes, as ``mx.nd.load`` gives them.

    The arrays are numpy arrays of the saved dtype and shape (C order, native byte order).
    """
    path = Path(path)
    index = read_params_index(path)
    out: dict[str, np.ndarray] = {}
    try:
        with open(path, "rb") as f:
            for name, info in index.items():
                f.seek(info.offset)
                data = f.read(info.nbytes)
                if len(data) != info.nbytes:  # the file shrank since the index was read
                    raise MXNetFormatError(path, f"truncated at byte {info.offset + len(data)} (array {name!r})")
                out[name] = np.frombuffer(data, info.dtype).reshape(info.shape).astype(info.dtype.newbyteorder("="))
    except OSError as e:
        raise MXNetFormatError(path, f"cannot read ({e.strerror or e})") from None
    return out


def split_params(params: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(arg_params, aux_params)`` without prefixes, like ``mx.model.load_checkpoint``; other names are dropped."""
    args = {k[len(ARG_PREFIX):]: v for k, v in params.items() if k.startswith(ARG_PREFIX)}
    aux = {k[len(AUX_PREFIX):]: v for k, v in params.items() if k.startswith(AUX_PREFIX)}
    return args, aux


def save_params(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` as ``mx.nd.save(path, dict)`` does (V2, dense, cpu context): byte-identical output.

    Names are written as given (use ``arg:``/``aux:`` prefixes for a checkpoint). Only the dtypes of
    :data:`DTYPES` can be written; a 0-d array cannot (V2 reads ndim 0 as "no shape").
    """
    flags = {dt: flag for flag, dt in DTYPES.items()}
    chunks = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for name, array in arrays.items():
        a = np.ascontiguousarray(array)
        dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder not in ("|", "<") else a.dtype
        if dtype not in flags:
            raise ValueError(f"{name}: dtype {a.dtype} cannot be saved in an MXNet params file")
        if a.ndim == 0:
            raise ValueError(f"{name}: a 0-d array cannot be saved in the V2 format")
        chunks.append(struct.pack(f"<IiI{a.ndim}q", V2_MAGIC, DENSE, a.ndim, *a.shape))
        chunks.append(struct.pack("<iii", 1, 0, flags[dtype]))
        chunks.append(a.astype(dtype, copy=False).tobytes())
    chunks.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        encoded = name.encode("utf-8")
        chunks.append(struct.pack("<Q", len(encoded)) + encoded)
    Path(path).write_bytes(b"".join(chunks))


class _Cursor:
    """Reads little-endian fields from ``f``; a short read is "truncated at byte N"."""

    def __init__(self, path: Path, f: BinaryIO, size: int) -> None:
        self.path, self.f, self.size, self.pos = path, f, size, 0

    def fail(self, reason: str) -> MXNetFormatError:
        return MXNetFormatError(self.path, reason)

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise self.fail(f"truncated at byte {self.size}: {what} needs {n} bytes from byte {self.pos}, "
                            f"the file ends {self.size - self.pos} bytes later")

    def unpack(self, fmt: str, what: str) -> tuple:
        n = struct.calcsize(fmt)
        self.need(n, what)
        data = self.f.read(n)
        if len(data) != n:
            raise self.fail(f"truncated at byte {self.pos + len(data)} while reading {what}")
        self.pos += n
        return struct.unpack(fmt, data)

    def skip(self, n: int, what: str) -> int:
        self.need(n, what)
        start = self.pos
        self.pos += n
        self.f.seek(self.pos)
        return start

    def read(self, n: int, what: str) -> bytes:
        self.need(n, what)
        data = self.f.read(n)
        self.pos += len(data)
        return data


def _parse_index(path: Path, f: BinaryIO, size: int) -> dict[str, ArrayInfo]:
    if size == 0:
        raise MXNetFormatError(path, "empty file (0 bytes); expected an MXNet NDArray list (.params)")
    c = _Cursor(path, f, size)
    if size < 8:
        raise c.fail(f"truncated at byte {size}: too short for an MXNet NDArray list (.params)")
    (magic,) = c.unpack("<Q", "the list magic")
    if magic != LIST_MAGIC:
        head = struct.pack("<Q", magic)
        raise c.fail(f"not an MXNet params file (NDArray list): starts with {head.hex(' ')}, "
                     f"expected the magic 12 01 00 00 00 00 00 00")
    c.unpack("<Q", "the reserved header field")
    (count,) = c.unpack("<Q", "the number of arrays")
    headers: list[tuple[tuple[int, ...], np.dtype, int, int]] = []
    for k in range(count):
        headers.append(_array_header(c, k, count))
    (n_names,) = c.unpack("<Q", "the number of names")
    if n_names not in (0, count):
        raise c.fail(f"holds {count} arrays but {n_names} names")
    names: list[str] = []
    for k in range(n_names):
        (length,) = c.unpack("<Q", f"the length of name {k}")
        raw = c.read(length, f"name {k} ({length} bytes)")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise c.fail(f"name {k} is not UTF-8 text ({raw[:40]!r})") from None
    if c.pos != size:
        raise c.fail(f"{size - c.pos} unexpected bytes after the last name (from byte {c.pos}); the file is "
                     f"not one MXNet NDArray list")
    if count and not names:
        raise c.fail(f"holds {count} arrays without names (saved from a list, not a dict); a checkpoint "
                     f"needs 'arg:'/'aux:' names")
    index: dict[str, ArrayInfo] = {}
    for name, (shape, dtype, offset, nbytes) in zip(names, headers):
        if name in index:
            raise c.fail(f"the name {name!r} appears twice")
        index[name] = ArrayInfo(name, shape, dtype, offset, nbytes)
    return index


def _array_header(c: _Cursor, k: int, count: int) -> tuple[tuple[int, ...], np.dtype, int, int]:
    what = f"array {k} of {count}"
    (magic,) = c.unpack("<I", f"the magic of {what}")
    if magic in (V2_MAGIC, V3_MAGIC):
        (stype,) = c.unpack("<i", f"the storage type of {what}")
        if stype != DENSE:
            kind = STORAGE_NAMES.get(stype)
            if kind is None:
                raise c.fail(f"{what} at byte {c.pos - 8} has an unknown storage type {stype} (corrupt file?)")
            raise c.fail(f"{what} is stored {kind}; only dense arrays are supported")
        (ndim,) = c.unpack("<i", f"the ndim of {what}")
        if not -1 <= ndim <= _MAX_NDIM:
            raise c.fail(f"{what} at byte {c.pos - 12} claims {ndim} dimensions (corrupt file?)")
        dims = c.unpack(f"<{max(ndim, 0)}q", f"the shape of {what}")
        shapeless = ndim == -1 if magic == V3_MAGIC else ndim == 0
    elif magic == V1_MAGIC:
        (ndim,) = c.unpack("<i", f"the ndim of {what}")
        if not 0 <= ndim <= _MAX_NDIM:
            raise c.fail(f"{what} at byte {c.pos - 8} claims {ndim} dimensions (corrupt file?)")
        dims = c.unpack(f"<{ndim}q", f"the shape of {what}")
        shapeless = ndim == 0
    elif magic <= _MAX_NDIM:  # pre-V1: the first field is the ndim, dims are uint32
        dims = c.unpack(f"<{magic}I", f"the shape of {what}")
        shapeless = magic == 0
    else:
        raise c.fail(f"{what} at byte {c.pos - 4} has the magic 0x{magic:08x}, not an NDArray (corrupt file?)")
    if shapeless:
        raise c.fail(f"{what} has no shape (an empty NDArray); a checkpoint holds none")
    if any(d < 0 for d in dims):
        raise c.fail(f"{what} has a negative dimension in its shape {tuple(dims)} (corrupt file?)")
    dev_type, _dev_id = c.unpack("<ii", f"the context of {what}")
    if dev_type not in DEV_TYPES:
        raise c.fail(f"{what} at byte {c.pos - 8} has an unknown device type {dev_type} (corrupt file?)")
    (flag,) = c.unpack("<i", f"the dtype of {what}")
    dtype = DTYPES.get(flag)
    if dtype is None:
        raise c.fail(f"{what} has an unknown dtype flag {flag} (corrupt file, or a dtype this reader lacks)")
    shape = tuple(int(d) for d in dims)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize  # a 0-d (V3) array holds one element
    offset = c.skip(nbytes, f"the data of {what} {shape} {dtype.name}")
    return shape, dtype, offset, nbytes


# --------------------------------------------------------------------------------------------------------------
# A checkpoint: both files together


@dataclass(frozen=True)
class CheckpointInfo:
    symbol: SymbolInfo
    params: Mapping[str, ArrayInfo]


def check_checkpoint(symbol_path: str | Path, params_path: str | Path, input_name: str = "data") -> CheckpointInfo:
    """Validate an MXNet checkpoint without MXNet and without reading the weights' data.

    The symbol parses (:func:`read_symbol`) and has the input variable ``input_name``; the params parse
    (:func:`read_params_index`) and hold ``arg:<name>`` for every argument and ``aux:<name>`` for every auxiliary
    state of the symbol, each with the shape the symbol implies where that is cheap to know. Raises
    :class:`MXNetFormatError` naming the file at fault.
    """
    symbol = read_symbol(symbol_path, (input_name,))
    if input_name not in symbol.data_inputs:
        raise MXNetFormatError(symbol.path, f"the graph has no input variable {input_name!r}")
    params = read_params_index(params_path)
    path = Path(params_path)
    for prefix, names in ((ARG_PREFIX, symbol.arguments), (AUX_PREFIX, symbol.auxiliary_states)):
        missing = [n for n in names if prefix + n not in params]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            what = "weights" if prefix == ARG_PREFIX else "auxiliary state"
            raise MXNetFormatError(path, f"no {what} for {missing[0]}{more} (no '{prefix}{missing[0]}' entry; the "
                                         f"symbol {symbol.path.name} needs it)")
        for n in names:
            expected = symbol.shapes.get(n)
            actual = params[prefix + n].shape
            if expected is not None and not _fits(actual, expected):
                shown = "(" + ", ".join("?" if d is None else str(d) for d in expected) + \
                        ("," if len(expected) == 1 else "") + ")"
                raise MXNetFormatError(path, f"'{prefix}{n}' has shape {actual}, the symbol "
                                             f"{symbol.path.name} implies {shown}")
    return CheckpointInfo(symbol, params)


def _fits(actual: tuple[int, ...], expected: tuple[int | None, ...]) -> bool:
    return len(actual) == len(expected) and all(e is None or a == e for a, e in zip(actual, expected))


@contextlib.contextmanager
def _reading(path: Path, expected: str) -> Iterator[None]:
    """Turn the OS errors of reading ``path`` into one-line MXNetFormatErrors naming it."""
    try:
        yield
    except FileNotFoundError:
        raise MXNetFormatError(path, "file not found") from None
    except IsADirectoryError:
        raise MXNetFormatError(path, f"is a directory, expected {expected}") from None
    except OSError as e:
        raise MXNetFormatError(path, f"cannot read ({e.strerror or e})") from None


def _read_bytes(path: Path) -> bytes:
    with _reading(path, "an MXNet symbol JSON"):
        return path.read_bytes()


__all__ = [
    "ARG_PREFIX", "AUX_PREFIX", "ArrayInfo", "CheckpointInfo", "MXNetFormatError", "SymbolInfo", "SymbolNode",
    "check_checkpoint", "read_params", "read_params_index", "read_symbol", "save_params", "split_params",
]
