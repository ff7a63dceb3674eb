"""Each op of the native route's table against MXNet itself (the oracle, in tests only), on tiny inputs, at a fixed
input size and with a dynamic height/width run at two sizes; covers the pitfalls the issue measured.

The pitfalls and SSH's own ops run in the fast lane (about 0.25 s each); the rest of the table is marked slow.
"""

from __future__ import annotations

import json

import numpy as np
import openvino as ov
import pytest

from ssh_toolkit.errors import UsageError
from ssh_toolkit.mxnet_format import read_symbol
from ssh_toolkit.native import Preprocess, translate
from ssh_toolkit.runners.mxnet_import import import_mxnet

mx = import_mxnet()
SIZES = ((9, 11), (12, 8))  # odd and even: the edge windows of pooling, crop and deconvolution differ
C = 4
CORE = ov.Core()


def _weights(sym, shape, rng):
    arg_shapes, _, aux_shapes = sym.infer_shape(data=shape)
    args = {n: rng.standard_normal(s).astype(np.float32) for n, s in zip(sym.list_arguments(), arg_shapes)
            if n != "data"}
    aux = {n: (rng.uniform(0.5, 2.0, s) if n.endswith("var") else rng.standard_normal(s)).astype(np.float32)
           for n, s in zip(sym.list_auxiliary_states(), aux_shapes)}
    return args, aux


def _mxnet(sym, x, args, aux):
    exe = sym.bind(mx.cpu(), {"data": mx.nd.array(x), **{k: mx.nd.array(v) for k, v in args.items()}},
                   aux_states={k: mx.nd.array(v) for k, v in aux.items()}, grad_req="null")
    return exe.forward(is_train=False)[0].asnumpy()


def _symbol_info(sym, tmp_path):
    path = tmp_path / "net-symbol.json"
    path.write_text(sym.tojson())
    return read_symbol(path)


def _openvino(model, x):
    compiled = CORE.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compiled({0: x})[0]


def check(sym, tmp_path, *, channels=C, dynamic=True, rtol=1e-5, atol=1e-5, sizes=SIZES, batch=1):
    """MXNet and the native translation agree on ``sym`` at a fixed size, and (``dynamic``) with a dynamic H/W at
    every size of ``sizes``; returns the last pair of outputs."""
    rng = np.random.default_rng(0)
    info = _symbol_info(sym, tmp_path)
    shape0 = (batch, channels, *sizes[0])
    args, aux = _weights(sym, shape0, rng)
    params = {**{"arg:" + k: v for k, v in args.items()}, **{"aux:" + k: v for k, v in aux.items()}}
    runs = [(translate(info, params, input_shape=shape0), [sizes[0]])]
    if dynamic:
        runs.append((translate(info, params, input_shape=(batch, channels, None, None)), list(sizes)))
    for model, hws in runs:
        for hw in hws:
            x = rng.standard_normal((batch, channels, *hw)).astype(np.float32)
            want = _mxnet(sym, x, args, aux)
            got = _openvino(model, x)
            assert got.shape == want.shape, (hw, got.shape, want.shape)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"size {hw}")
    return got, want


data = mx.sym.Variable("data")
slow = pytest.mark.slow


def fast_first(values, ids, fast=1):
    """pytest.param for each value: the first ``fast`` in the fast lane, the others marked slow."""
    return [pytest.param(v, id=i, marks=() if k < fast else slow) for k, (v, i) in enumerate(zip(values, ids))]


@slow
@pytest.mark.parametrize("kwargs", [
    dict(kernel=(3, 3), pad=(1, 1), num_filter=6),
    dict(kernel=(3, 3), stride=(2, 2), num_filter=6, no_bias=True),
    dict(kernel=(3, 3), dilate=(2, 2), pad=(2, 2), num_filter=4, num_group=2),
    dict(kernel=(1, 1), num_filter=4, num_group=4),
], ids=["pad", "stride-no_bias", "dilate-grouped", "depthwise-1x1"])
def test_convolution(kwargs, tmp_path):
    check(mx.sym.Convolution(data, name="c", **kwargs), tmp_path)


@pytest.mark.parametrize("kwargs", fast_first([
    # SSH's upsampling: depthwise, kernel 4, stride 2, pad 1; no_bias left to its default, which is TRUE here
    dict(kernel=(4, 4), stride=(2, 2), pad=(1, 1), num_filter=C, num_group=C),
    dict(kernel=(4, 4), stride=(2, 2), pad=(1, 1), num_filter=6, num_group=2),  # weights (C_in, F/G, k, k)
    dict(kernel=(3, 3), stride=(2, 2), pad=(1, 1), adj=(1, 1), num_filter=6, no_bias=False),
], ["ssh-depthwise-no_bias", "grouped", "adj-bias"], fast=2))
def test_deconvolution(kwargs, tmp_path):
    check(mx.sym.Deconvolution(data, name="d", **kwargs), tmp_path)


def test_deconvolution_no_bias_defaults_to_true(tmp_path):
    """Without no_bias in the file the node has no bias input: a translation that added one would need weights."""
    sym = mx.sym.Deconvolution(data, kernel=(2, 2), stride=(2, 2), num_filter=3, name="d")
    assert "d_bias" not in sym.list_arguments()
    check(sym, tmp_path)


@slow
def test_deconvolution_target_shape_static_only(tmp_path):
    """MXNet 1.9.1 on this CPU (MKLDNN) cannot run a target_shape that needs padding ("could not create a descriptor
    for a dilated deconvolution"), so values are checked on one that needs none, and the padded case's shape against
    MXNet's own shape inference."""
    sym = mx.sym.Deconvolution(data, kernel=(2, 2), stride=(2, 2), target_shape=(18, 22), num_filter=2, name="d")
    got, _ = check(sym, tmp_path, dynamic=False)
    assert got.shape[2:] == (18, 22)
    padded = mx.sym.Deconvolution(data, kernel=(4, 4), stride=(2, 2), target_shape=(17, 22), num_filter=2, name="d")
    want = padded.infer_shape(data=(1, C, 9, 11))[1][0]
    info = _symbol_info(padded, tmp_path)
    w = {"arg:d_weight": np.ones((C, 2, 4, 4), np.float32)}
    assert tuple(translate(info, w, input_shape=(1, C, 9, 11)).output(0).get_shape()) == want == (1, 2, 17, 22)
    with pytest.raises(UsageError, match=r"node 'd' \(op Deconvolution\): attribute target_shape: .*static"):
        translate(info, w, input_shape=(1, C, None, None))


@slow
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "softrelu", "softsign"])
def test_activation(act, tmp_path):
    check(mx.sym.Activation(data, act_type=act, name="a"), tmp_path)


@slow
@pytest.mark.parametrize("kwargs", [dict(act_type="leaky", slope=0.1), dict(act_type="elu", slope=0.7),
                                    dict(act_type="prelu")], ids=["leaky", "elu", "prelu"])
def test_leaky_relu(kwargs, tmp_path):
    check(mx.sym.LeakyReLU(data, name="l", **kwargs), tmp_path)


@pytest.mark.parametrize("kwargs", fast_first([
    dict(pool_type="max", kernel=(2, 2), stride=(2, 2)),  # SSH's
    # the pitfall: edge windows of a ceil output reaching into the padding
    dict(pool_type="avg", kernel=(3, 3), stride=(2, 2), pad=(1, 1), pooling_convention="full"),
    dict(pool_type="max", kernel=(3, 3), stride=(2, 2), pad=(1, 1), pooling_convention="full"),
    dict(pool_type="avg", kernel=(2, 2), stride=(2, 2)),  # the toy's
    dict(pool_type="avg", kernel=(3, 3), stride=(2, 2), pad=(1, 1)),
    dict(pool_type="avg", kernel=(3, 3), stride=(2, 2), pad=(1, 1), pooling_convention="full",
         count_include_pad=False),
    dict(pool_type="max", global_pool=True, kernel=(1, 1)),
    dict(pool_type="avg", global_pool=True, kernel=(1, 1)),
], ["max", "avg-full-pad", "max-full-pad", "avg", "avg-valid-pad", "avg-full-pad-exclude", "global-max",
    "global-avg"], fast=2))
def test_pooling(kwargs, tmp_path):
    check(mx.sym.Pooling(data, name="p", **kwargs), tmp_path)


def test_softmax_activation_channel(tmp_path):
    check(mx.sym.SoftmaxActivation(data, mode="channel", name="s"), tmp_path)


def test_softmax_activation_instance_is_over_the_last_axis(tmp_path):
    """MXNet's docs say instance mode normalizes over all but the first axis; 1.9.1 computes the last axis."""
    got, want = check(mx.sym.SoftmaxActivation(data, name="s"), tmp_path)
    np.testing.assert_allclose(want.sum(axis=-1), 1.0, rtol=1e-5)
    assert not np.allclose(want.sum(axis=(1, 2, 3)), 1.0)


@slow
def test_softmax_activation_instance_2d(tmp_path):
    check(mx.sym.SoftmaxActivation(mx.sym.Flatten(data, name="f"), name="s"), tmp_path, dynamic=False)


_SHAPES = [(0, 2, -1, 0), (0, -1), (-2,), (0, -3, 0), (-3, -2), (0, -4, 2, -1, 0, 0), (0, -4, -1, 2, -2), (1, C, -1)]


@pytest.mark.parametrize("shape", fast_first(_SHAPES, [str(v) for v in _SHAPES]))
def test_reshape_codes(shape, tmp_path):
    check(mx.sym.Reshape(data, shape=shape, name="r"), tmp_path)


@slow
def test_flatten_and_fully_connected(tmp_path):
    net = mx.sym.FullyConnected(mx.sym.Flatten(data, name="f"), num_hidden=5, name="fc")
    check(net, tmp_path, dynamic=False)  # the weight's shape follows H*W
    check(mx.sym.FullyConnected(data, num_hidden=3, no_bias=True, name="fc"), tmp_path, dynamic=False)


@slow
def test_fully_connected_without_flatten(tmp_path):
    check(mx.sym.FullyConnected(data, num_hidden=3, flatten=False, name="fc"), tmp_path, sizes=((5, 7), (6, 7)))


@slow
@pytest.mark.parametrize("fix_gamma", [True, False])
def test_batch_norm(fix_gamma, tmp_path):
    check(mx.sym.BatchNorm(data, fix_gamma=fix_gamma, eps=1e-4, name="bn"), tmp_path)


@slow
def test_up_sampling_nearest(tmp_path):
    check(mx.sym.UpSampling(data, scale=2, sample_type="nearest", name="u"), tmp_path)


def test_crop_trims_top_left_to_the_second_inputs_size(tmp_path):
    """SSH's Crop: no offset, no centring: the bottom/right rows go."""
    small = mx.sym.Pooling(data, kernel=(2, 2), stride=(2, 2), pool_type="max", name="p")
    got, want = check(mx.sym.Crop(data, small, name="crop"), tmp_path)
    assert got.shape[2:] == (6, 4)


@slow
@pytest.mark.parametrize("kwargs", [dict(offset=(1, 2)), dict(center_crop=True)], ids=["offset", "center"])
def test_crop_offset_and_center(kwargs, tmp_path):
    small = mx.sym.Pooling(data, kernel=(2, 2), stride=(2, 2), pool_type="max", name="p")
    check(mx.sym.Crop(data, small, name="crop", **kwargs), tmp_path)
    check(mx.sym.Crop(data, h_w=(3, 4), name="crop", **kwargs), tmp_path)


@slow
@pytest.mark.parametrize("kwargs", [dict(axis=2, begin=1, end=None), dict(axis=1, begin=0, end=2),
                                    dict(axis=3, begin=-3, end=-1)], ids=["to-end", "channels", "negative"])
def test_slice_axis(kwargs, tmp_path):
    check(mx.sym.slice_axis(data, name="s", **kwargs), tmp_path)


@slow
def test_concat_clip_and_dropout(tmp_path):
    check(mx.sym.concat(data, mx.sym.clip(data, a_min=-0.5, a_max=0.3, name="c"), dim=1, name="cat"), tmp_path)
    check(mx.sym.Dropout(mx.sym.relu(data, name="r"), p=0.3, name="drop"), tmp_path)


@slow
@pytest.mark.parametrize("op", ["elemwise_add", "elemwise_sub", "elemwise_mul", "elemwise_div", "_Plus",
                                "broadcast_mul", "broadcast_sub", "add_n"])
def test_binary(op, tmp_path):
    other = mx.sym.Activation(data, act_type="sigmoid", name="sig")  # positive: a safe divisor
    if op.startswith("broadcast"):
        other = mx.sym.Pooling(other, global_pool=True, kernel=(1, 1), pool_type="avg", name="g")
    if op == "add_n":
        check(mx.sym.add_n(data, other, other, name="sum"), tmp_path)
    else:
        check((getattr(mx.sym, op, None) or getattr(mx.sym._internal, op))(data, other, name="b"), tmp_path)


@slow
@pytest.mark.parametrize("op", ["_plus_scalar", "_minus_scalar", "_rminus_scalar", "_mul_scalar", "_div_scalar",
                                "_rdiv_scalar"])
def test_scalar_arithmetic(op, tmp_path):
    x = mx.sym.Activation(data, act_type="sigmoid", name="sig") if op == "_rdiv_scalar" else data
    check(getattr(mx.sym._internal, op)(x, scalar=1.5, name="s"), tmp_path)


def test_every_tensor_is_named_after_its_node(tmp_path):
    net = mx.sym.Convolution(data, kernel=(1, 1), num_filter=2, name="conv")
    net = mx.sym.Activation(net, act_type="relu", name="relu")
    net = mx.sym.Dropout(net, name="drop")
    info = _symbol_info(net, tmp_path)
    model = translate(info, {"arg:conv_weight": np.ones((2, C, 1, 1), np.float32),
                             "arg:conv_bias": np.zeros(2, np.float32)}, input_shape=(1, C, 4, 4))
    names = [o.get_names() for op in model.get_ordered_ops() for o in op.outputs()]
    assert {"conv", "conv:0"} in names
    # Dropout is nothing at inference: its output is ReLU's tensor, under both nodes' names
    assert model.output(0).get_names() == {"relu", "relu:0", "drop", "drop:0"}
    assert model.input(0).get_names() == {"data", "data:0"}


def test_preprocessing_reverses_channels_then_subtracts_the_mean(tmp_path):
    """Model Optimizer's meaning: --mean_values are in the original model's (RGB) order, applied after the flip."""
    sym = mx.sym.Activation(data, act_type="relu", name="r")
    info = _symbol_info(sym, tmp_path)
    pre = Preprocess.from_mo_args(["--input=data", "--mean_values=data[1,2,3]", "--scale_values=data[2,2,2]",
                                   "--reverse_input_channels"], "data")
    model = translate(info, {}, input_shape=(1, 3, 2, 2), preprocess=pre)
    bgr = np.stack([np.full((2, 2), v, np.float32) for v in (30.0, 20.0, 10.0)])[None]
    got = _openvino(model, bgr)
    np.testing.assert_allclose(got[0, :, 0, 0], [(10 - 1) / 2, (20 - 2) / 2, (30 - 3) / 2])


def test_preprocessing_refuses_what_it_cannot_honour():
    with pytest.raises(UsageError, match=r"'--layout=nchw' has no meaning in the native route"):
        Preprocess.from_mo_args(["--layout=nchw"], "data", "card.yaml")
    with pytest.raises(UsageError, match=r"--mean_values=data\[v1,v2,v3\]"):
        Preprocess.from_mo_args(["--mean_values=(1,2,3)"], "data", "card.yaml")


def _node_json(tmp_path, op: str, attrs: dict) -> object:
    doc = {"nodes": [{"op": "null", "name": "data", "inputs": []},
                     {"op": op, "name": "weird", "attrs": attrs, "inputs": [[0, 0, 0]]}],
           "arg_nodes": [0], "heads": [[1, 0, 0]], "attrs": {"mxnet_version": ["int", 10901]}}
    path = tmp_path / "x-symbol.json"
    path.write_text(json.dumps(doc))
    return read_symbol(path)


def test_an_unsupported_op_is_named_with_its_node(tmp_path):
    info = _node_json(tmp_path, "ROIPooling", {"pooled_size": "(7, 7)", "spatial_scale": "0.0625"})
    with pytest.raises(UsageError, match=r"x-symbol.json: node 'weird': op 'ROIPooling' is not supported by the "
                                         r"native route \(supported: .*Convolution.*\); use --route mo"):
        translate(info, {}, input_shape=(1, 3, 8, 8))


@pytest.mark.parametrize("op, attrs, attr", [
    ("Pooling", {"kernel": "(2, 2)", "pool_type": "lp"}, r"pool_type='lp' .*supported: 'max' or 'avg'"),
    ("Pooling", {"kernel": "(2, 2)", "pooling_convention": "same"}, r"pooling_convention='same'"),
    ("Activation", {"act_type": "gelu"}, r"act_type='gelu'"),
    ("SoftmaxActivation", {"mode": "channel", "temperature": "2"}, r"temperature='2' is not supported"),
    ("Reshape", {"shape": "(0, -1)", "reverse": "True"}, r"reverse='True'"),
    ("Convolution", {"kernel": "(3, 3, 3)", "num_filter": "2"}, r"kernel='\(3, 3, 3\)' .*2-D kernel"),
])
def test_an_unsupported_attribute_is_named_with_node_and_op(tmp_path, op, attrs, attr):
    info = _node_json(tmp_path, op, attrs)
    with pytest.raises(UsageError, match=rf"node 'weird' \(op {op}\): attribute {attr}"):
        translate(info, {}, input_shape=(1, 3, 8, 8))
