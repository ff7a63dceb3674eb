"""The pure-Python MXNet checkpoint reader, checked against MXNet itself (imported here only, as the oracle)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from mxnet_files import nd_list, symbol_json

from ssh_toolkit import mxnet_format
from ssh_toolkit.errors import InputDataError
from ssh_toolkit.mxnet_format import (
    MXNetFormatError,
    check_checkpoint,
    read_params,
    read_params_index,
    read_symbol,
    save_params,
    split_params,
)
from ssh_toolkit.runners.mxnet_import import import_mxnet


@pytest.fixture(scope="module")
def mx():
    return import_mxnet()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, card):
    """The stand-in (exact SSH architecture) and toy checkpoints, written by MXNet."""
    from ssh_toolkit.standins.synthesize import synthesize_standin
    from ssh_toolkit.standins.toy import synthesize_toy

    root = tmp_path_factory.mktemp("mxnet-format")
    return {"standin": synthesize_standin(card, root / "standin", seed=0),
            "toy": synthesize_toy(card, root / "toy", seed=0)}


def _same_as_mxnet(mine: dict[str, np.ndarray], theirs: dict) -> None:
    assert list(mine) == list(theirs)
    for name, a in mine.items():
        b = theirs[name].asnumpy()
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)


# ------------------------------------------------------------------------------------------------------------
# Against MXNet


@pytest.mark.parametrize("kind", ["standin", "toy"])
def test_params_are_identical_to_mx_nd_load(mx, checkpoints, kind):
    ck = checkpoints[kind]
    mine = read_params(ck.params_path)
    _same_as_mxnet(mine, mx.nd.load(str(ck.params_path)))
    assert all(k.startswith(("arg:", "aux:")) for k in mine)
    index = read_params_index(ck.params_path)
    assert {k: (v.shape, v.dtype) for k, v in index.items()} == {k: (v.shape, v.dtype) for k, v in mine.items()}
    assert sum(v.nbytes for v in index.values()) == sum(v.nbytes for v in mine.values())


@pytest.mark.parametrize("kind", ["standin", "toy"])
def test_symbol_matches_mxnet(mx, checkpoints, kind):
    ck = checkpoints[kind]
    sym = mx.sym.load(str(ck.symbol_path))
    info = read_symbol(ck.symbol_path)
    assert info.data_inputs == ("data",)
    assert ("data", *info.arguments) == tuple(sym.list_arguments())
    assert info.auxiliary_states == tuple(sym.list_auxiliary_states())
    assert [f"{name}_output" for name, _ in info.heads] == sym.list_outputs()
    assert info.mxnet_version == 10901
    # Every shape the reader claims to know agrees with MXNet's own shape inference.
    arg_shapes, _, _ = sym.infer_shape(data=(1, 3, 128, 128))
    inferred = dict(zip(sym.list_arguments(), arg_shapes))
    assert len(info.shapes) == len(info.arguments)  # convolutions only: every weight and bias is covered
    for name, shape in info.shapes.items():
        assert len(shape) == len(inferred[name]) and all(s in (None, t) for s, t in zip(shape, inferred[name])), name
    check_checkpoint(ck.symbol_path, ck.params_path)


def test_batchnorm_running_statistics_are_auxiliary_states(mx, tmp_path):
    data = mx.sym.var("data")
    net = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), name="c")
    net = mx.sym.BatchNorm(net, name="bn")
    net = mx.sym.FullyConnected(net, num_hidden=5, name="fc")
    path = tmp_path / "s-symbol.json"
    net.save(str(path))
    info = read_symbol(path)
    assert ("data", *info.arguments) == tuple(net.list_arguments())
    assert info.auxiliary_states == tuple(net.list_auxiliary_states()) == ("bn_moving_mean", "bn_moving_var")
    assert info.shapes["fc_weight"] == (5, None) and info.shapes["bn_moving_var"] == (None,)
    args, _, auxs = net.infer_shape(data=(1, 3, 8, 8))
    arrays = {f"arg:{n}": np.ones(s, np.float32) for n, s in zip(net.list_arguments()[1:], args[1:])}
    arrays.update({f"aux:{n}": np.ones(s, np.float32) for n, s in zip(net.list_auxiliary_states(), auxs)})
    params = tmp_path / "s-0000.params"
    save_params(params, arrays)
    check_checkpoint(path, params)
    del arrays["aux:bn_moving_var"]
    save_params(params, arrays)
    with pytest.raises(MXNetFormatError, match="no auxiliary state for bn_moving_var"):
        check_checkpoint(path, params)


def test_save_params_is_byte_identical_to_mx_nd_save(mx, tmp_path):
    rng = np.random.default_rng(1)
    arrays = {
        "arg:w": rng.standard_normal((3, 2, 5)).astype(np.float32),
        "arg:d": rng.standard_normal(7),
        "aux:h": rng.standard_normal((2, 2)).astype(np.float16),
        "arg:u": rng.integers(0, 255, (4,), dtype=np.uint8),
        "arg:i": rng.integers(-9, 9, (2, 3), dtype=np.int32),
        "arg:l": rng.integers(-9, 9, (3,), dtype=np.int64),
        "arg:e": np.zeros((0, 3), np.float32),
    }
    ours, theirs = tmp_path / "ours.params", tmp_path / "theirs.params"
    save_params(ours, arrays)
    mx.nd.save(str(theirs), {k: mx.nd.array(v, dtype=v.dtype) for k, v in arrays.items()})
    assert ours.read_bytes() == theirs.read_bytes()
    back = read_params(theirs)
    _same_as_mxnet(back, mx.nd.load(str(theirs)))
    for k, v in arrays.items():
        assert back[k].dtype == v.dtype
        np.testing.assert_array_equal(back[k], v)
    args, aux = split_params(back)
    assert sorted(args) == ["d", "e", "i", "l", "u", "w"] and list(aux) == ["h"]


def _array_v1(a: np.ndarray) -> bytes:
    return struct.pack(f"<Ii{a.ndim}qiii", 0xF993FAC8, a.ndim, *a.shape, 1, 0, 0) + a.astype("<f4").tobytes()


def _array_pre_v1(a: np.ndarray) -> bytes:
    return struct.pack(f"<I{a.ndim}Iiii", a.ndim, *a.shape, 1, 0, 0) + a.astype("<f4").tobytes()


def _with_names(arrays: list[bytes], names: list[str]) -> bytes:
    out = struct.pack("<QQQ", 0x112, 0, len(arrays)) + b"".join(arrays) + struct.pack("<Q", len(names))
    return out + b"".join(struct.pack("<Q", len(n)) + n.encode() for n in names)


def test_older_array_formats_read_as_mxnet_reads_them(mx, tmp_path):
    """Files written by MXNet before 1.0 (V1 magic, and the magic-less format with uint32 dimensions)."""
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.array([1.5, -2.0], np.float32)
    path = tmp_path / "old.params"
    path.write_bytes(_with_names([_array_v1(a), _array_pre_v1(b)], ["arg:a", "aux:b"]))
    mine = read_params(path)
    _same_as_mxnet(mine, mx.nd.load(str(path)))
    np.testing.assert_array_equal(mine["arg:a"], a)


def test_v3_numpy_shape_arrays(mx, tmp_path):
    path = tmp_path / "np.params"
    with mx.util.np_shape(True):
        mx.nd.save(str(path), {"arg:s": mx.nd.array(np.float32(3.0).reshape(())),
                               "arg:v": mx.nd.array(np.arange(3, dtype=np.float32))})
        theirs = mx.nd.load(str(path))
        theirs = {k: v.asnumpy() for k, v in theirs.items()}
    mine = read_params(path)
    assert list(mine) == list(theirs) and mine["arg:s"].shape == () and mine["arg:s"] == 3.0
    np.testing.assert_array_equal(mine["arg:v"], theirs["arg:v"])


def test_header_only_index_seeks_past_the_data(checkpoints, monkeypatch):
    """Validating the 79 MB stand-in reads a few kilobytes, not the weights."""
    ck = checkpoints["standin"]
    read_bytes = []
    real_open = open

    class Counting:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            data = self.f.read(n)
            read_bytes.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(mxnet_format, "open", lambda *a, **k: Counting(real_open(*a, **k)), raising=False)
    index = read_params_index(ck.params_path)
    assert sum(v.nbytes for v in index.values()) > 79_000_000
    assert 0 < sum(read_bytes) < 20_000


# ------------------------------------------------------------------------------------------------------------
# Damaged params files: one line naming the file and the real reason

W = np.arange(2 * 3 * 16 * 16, dtype=np.float32).reshape(2, 3, 16, 16)
GOOD = nd_list({"arg:conv_weight": W, "arg:conv_bias": np.ones(25, np.float32)})
HEADER = 24 + 4 + 4 + 4 + 4 * 8 + 12  # list header, then array 0: magic, storage, ndim, dims, context + dtype


def _fail(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    with pytest.raises(MXNetFormatError) as ei:
        read_params_index(path)
    msg = str(ei.value)
    assert isinstance(ei.value, InputDataError) and ei.value.exit_code == 2
    assert msg.startswith(f"{path}: ") and "\n" not in msg and msg == f"{path}: {ei.value.reason}"
    return ei.value.reason


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file (0 bytes); expected an MXNet NDArray list (.params)"),
    (GOOD[:5], "truncated at byte 5: too short for an MXNet NDArray list (.params)"),
    (GOOD[:20], "truncated at byte 20: the number of arrays needs 8 bytes from byte 16, the file ends 4 bytes later"),
    (GOOD[:HEADER + 100], f"truncated at byte {HEADER + 100}: the data of array 0 of 2 (2, 3, 16, 16) float32 "
                          f"needs {W.nbytes} bytes from byte {HEADER}, the file ends 100 bytes later"),
    (GOOD[:-4], f"truncated at byte {len(GOOD) - 4}: name 1 (13 bytes) needs 13 bytes from byte "
                f"{len(GOOD) - 13}, the file ends 9 bytes later"),
    (GOOD + b"\0\0", f"2 unexpected bytes after the last name (from byte {len(GOOD)})"),
    (b"\x89PNG\r\n\x1a\n" + GOOD, "not an MXNet params file (NDArray list): starts with 89 50 4e 47 0d 0a 1a 0a"),
    (GOOD[:24] + b"\x01\x02\x03\x04" + GOOD[28:], "array 0 of 2 at byte 24 has the magic 0x04030201, not an "
                                                 "NDArray (corrupt file?)"),
    (GOOD[:28] + struct.pack("<i", 1) + GOOD[32:], "array 0 of 2 is stored row_sparse; only dense arrays"),
    (GOOD[:32] + struct.pack("<i", 1000) + GOOD[36:], "array 0 of 2 at byte 24 claims 1000 dimensions"),
    (GOOD[:HEADER - 4] + struct.pack("<i", 99) + GOOD[HEADER:], "array 0 of 2 has an unknown dtype flag 99"),
    (GOOD[:HEADER - 12] + struct.pack("<i", 77) + GOOD[HEADER - 8:], "unknown device type 77"),
    (_with_names([_array_v1(W)], []), "holds 1 arrays without names (saved from a list, not a dict)"),
    (_with_names([_array_v1(W), _array_v1(W)], ["arg:a"])[:-13] + struct.pack("<Q", 1) +
     struct.pack("<Q", 5) + b"arg:a", "holds 2 arrays but 1 names"),
    (_with_names([_array_v1(W), _array_v1(W)], ["arg:a", "arg:a"]), "the name 'arg:a' appears twice"),
    (_with_names([_array_v1(W)], ["arg:\xe9"]).replace("arg:\xe9".encode(), b"arg:\xe9x"),
     "name 0 is not UTF-8 text"),
    (_with_names([struct.pack("<IiI", 0xF993FAC9, 0, 0)], ["arg:x"]), "array 0 of 1 has no shape"),
])
def test_damaged_params_name_file_and_reason(tmp_path, data, reason):
    assert reason in _fail(tmp_path / "sshb-0000.params", data)


def test_read_params_missing_file_and_directory(tmp_path):
    with pytest.raises(MXNetFormatError, match=r"nope.params: file not found"):
        read_params(tmp_path / "nope.params")
    with pytest.raises(MXNetFormatError, match="is a directory"):
        read_params(tmp_path)


# ------------------------------------------------------------------------------------------------------------
# Damaged symbol files

def _node(op, name, inputs=()):
    return {"op": op, "name": name, "inputs": [[i, 0, 0] for i in inputs]}


GRAPH = {"nodes": [_node("null", "data"), _node("null", "w"), _node("FullyConnected", "fc", (0, 1))],
         "arg_nodes": [0, 1], "heads": [[2, 0, 0]]}


def _graph(**changes):
    g = json.loads(json.dumps(GRAPH))
    g.update(changes)
    return json.dumps(g).encode()


@pytest.mark.parametrize("text, reason", [
    (b"", "empty file (0 bytes); expected an MXNet symbol JSON"),
    (b"  \n", "empty file (3 bytes)"),
    (b'{"nodes": [}', "not JSON at line 1, column 12: Expecting value"),
    (b'{\n  "nodes": [],\n  oops\n}', "not JSON at line 3, column 3"),
    (b"\xff\xfe{", "not JSON: not UTF-8 text (byte 0xff at offset 0)"),
    (b"[" * 100_000, "not an MXNet symbol: JSON nested too deeply"),
    (b"42", "not an MXNet symbol JSON: expected an object at the top level, got a number"),
    (b'{"arg_nodes": [], "heads": []}', "not an MXNet symbol JSON: no 'nodes' key"),
    (_graph(heads={}), "'heads' is an object, expected a list"),
    (_graph(nodes=[]), "'nodes' is empty"),
    (_graph(heads=[]), "'heads' is empty (the graph has no output)"),
    (_graph(nodes=[_node("null", "data"), {"op": "null", "inputs": []}]), "node 1 has no string 'name'"),
    (_graph(nodes=[_node("null", "data"), {"op": "x", "name": "y"}]), "node 1 (y) has no 'inputs' list"),
    (_graph(nodes=[_node("null", "data"), _node("Flatten", "f", (1,))]),
     "node 1 (f) input 0 refers to node 1, which is not an earlier node"),
    (_graph(nodes=[_node("null", "data"), {"op": "Flatten", "name": "f", "inputs": [[0, "x"]]}]),
     "node 1 (f) input 0 is [0, 'x'], expected [node, output, version]"),
    (_graph(arg_nodes=[0, 2]), "arg_nodes[1] = 2 is node 'fc' of op 'FullyConnected', not a variable"),
    (_graph(arg_nodes=[7]), "arg_nodes[0] = 7 is not a node index"),
    (_graph(heads=[[3, 0, 0]]), "heads[0] refers to node 3, which is not a node"),
    (_graph(nodes=[_node("null", "data"), _node("null", "data"), _node("Concat", "c", (0, 1))]),
     "two variables are named 'data'"),
])
def test_damaged_symbol_names_file_and_reason(tmp_path, text, reason):
    path = tmp_path / "sshb-symbol.json"
    path.write_bytes(text)
    with pytest.raises(MXNetFormatError) as ei:
        read_symbol(path)
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg
    assert reason in msg, msg


def test_symbol_with_bom_and_legacy_attribute_key(tmp_path):
    g = json.loads(symbol_json(kernel=3, filters=8))
    for n in g["nodes"]:
        if "attrs" in n:
            n["param"] = n.pop("attrs")  # MXNet 0.x wrote "param"
    path = tmp_path / "s.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(g).encode())
    info = read_symbol(path)
    assert info.arguments == ("conv_weight", "conv_bias")
    assert info.shapes == {"conv_weight": (8, None, 3, 3), "conv_bias": (8,)}
    assert info.heads == (("conv", 0),) and info.mxnet_version == 10901


def test_checkpoint_needs_the_input_variable(tmp_path):
    sym, params = tmp_path / "s.json", tmp_path / "p.params"
    sym.write_bytes(symbol_json(kernel=16, filters=25))
    params.write_bytes(nd_list({"arg:conv_weight": np.zeros((25, 3, 16, 16), np.float32),
                                "arg:conv_bias": np.zeros(25, np.float32)}))
    info = check_checkpoint(sym, params)
    assert set(info.params) == {"arg:conv_weight", "arg:conv_bias"}
    with pytest.raises(MXNetFormatError, match=r"s.json: the graph has no input variable 'image'"):
        check_checkpoint(sym, params, input_name="image")
