"""The table of MXNet ops the native route translates, with the attribute values each translation supports.

Every entry says, per attribute, its default (MXNet's), how its text is parsed and which values are supported;
an op missing from :data:`OPS`, an attribute missing from its entry or a value outside it is refused by
:func:`~ssh_toolkit.native.translate.translate` naming the node, the op and the attribute. Nothing is guessed:
an attribute this table does not know could change the result.

Each builder gets the node's input tensors (OpenVINO outputs), the parsed attributes and the weights (numpy) of
inputs that are variables, and returns the node's output tensor. The semantics follow MXNet 1.9.1 as measured
against it (``tests/native/test_ops.py``), including where its documentation says otherwise.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

# Attribute names MXNet writes that change nothing at inference on a CPU (performance hints, training knobs).
PERFORMANCE_ATTRS = frozenset({"workspace", "cudnn_tune", "cudnn_off", "momentum"})


class Unsupported(ValueError):
    """A node the table cannot translate: ``attr`` is the attribute at fault (None: the op or its inputs)."""

    def __init__(self, reason: str, attr: str | None = None) -> None:
        super().__init__(reason)
        self.attr = attr


# --------------------------------------------------------------------------------------------- attribute parsing


def _none(text: str) -> bool:
    return text.strip() in ("None", "none", "")


def as_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1"):
        return True
    if t in ("false", "0"):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def as_int(text: str) -> int:
    return int(text.strip())


def as_float(text: str) -> float:
    return float(text.strip())


def as_opt_int(text: str) -> int | None:
    return None if _none(text) else int(text.strip())


def as_tuple(text: str) -> tuple[int, ...]:
    t = text.strip()
    if _none(t):
        return ()
    value = ast.literal_eval(t if t.startswith(("(", "[")) else f"({t},)")
    value = value if isinstance(value, (tuple, list)) else (value,)
    return tuple(int(v) for v in value)


def as_str(text: str) -> str:
    return text.strip()


@dataclass(frozen=True)
class Attr:
    """One attribute: its MXNet default (text, parsed like a value; None: required), parser and supported values."""

    default: str | None
    parse: Callable[[str], Any] = as_str
    allowed: Callable[[Any], bool] | None = None
    supported: str = ""  # the supported values, as the error message names them


@dataclass(frozen=True)
class OpSpec:
    build: Callable[..., Any]
    attrs: Mapping[str, Attr] = field(default_factory=dict)
    summary: str = ""  # what the translation maps to (docs/native.md's table)


def _one_of(*values: Any) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: v in values), " or ".join(repr(v) for v in values)


def _attr_one_of(default: str, *values: Any, parse: Callable[[str], Any] = as_str) -> Attr:
    allowed, text = _one_of(*values)
    return Attr(default, parse, allowed, text)


def _pair(name: str, default: str | None, *, minimum: int = 0) -> Attr:
    """A 2-D attribute: two integers >= ``minimum``, or empty when it has a default (MXNet's ``()``)."""
    def ok(v: tuple[int, ...]) -> bool:
        return (len(v) == 2 or (not v and default is not None)) and all(x >= minimum for x in v)

    return Attr(default, as_tuple, ok, f"2 {'positive' if minimum > 0 else 'non-negative'} values (2-D {name})")


# ------------------------------------------------------------------------------------------------------ builders


@dataclass
class Node:
    """What a builder sees of one MXNet node."""

    name: str
    op: str
    inputs: list  # openvino Output per input
    attrs: dict[str, Any]
    weights: list  # numpy array per input that is a variable with weights, else None
    ops: Any  # the openvino opset module
    input_shape_static: bool = True  # False when the model's height/width are dynamic

    def weight(self, k: int, what: str) -> np.ndarray:
        if k >= len(self.weights) or self.weights[k] is None:
            raise Unsupported(f"input {k} ({what}) must be a variable with weights in the params file")
        return self.weights[k]

    def const(self, value, dtype=np.float32):
        return self.ops.constant(np.asarray(value, dtype=dtype))

    def i64(self, values: Sequence[int]):
        return self.ops.constant(np.asarray(values, dtype=np.int64))


def _pads(n: Node) -> tuple[list[int], list[int], list[int], list[int]]:
    kernel = list(n.attrs["kernel"])
    stride = list(n.attrs["stride"] or (1, 1))
    dilate = list(n.attrs["dilate"] or (1, 1))
    pad = list(n.attrs["pad"] or (0, 0))
    return kernel, stride, dilate, pad


def _bias(n: Node, out, k: int = 2):
    if n.attrs["no_bias"]:
        return out
    b = n.weight(k, "bias").astype(np.float32)
    return n.ops.add(out, n.const(b.reshape(1, -1, 1, 1)))


def convolution(n: Node):
    kernel, stride, dilate, pad = _pads(n)
    w = n.weight(1, "weight").astype(np.float32)
    g = n.attrs["num_group"]
    if g == 1:
        out = n.ops.convolution(n.inputs[0], n.const(w), stride, pad, pad, dilate)
    else:
        f = w.shape[0]
        out = n.ops.group_convolution(n.inputs[0], n.const(w.reshape(g, f // g, *w.shape[1:])), stride, pad, pad,
                                      dilate)
    return _bias(n, out)


def deconvolution(n: Node):
    """MXNet's weight is (C_in, F/G, k, k) for any G; OpenVINO wants (C_in, F, k, k) or (G, C_in/G, F/G, k, k)."""
    kernel, stride, dilate, pad = _pads(n)
    adj = list(n.attrs["adj"] or (0, 0))
    target = n.attrs["target_shape"]
    if target:
        if not n.input_shape_static:
            raise Unsupported("target_shape needs a static input height and width (convert without "
                              "--dynamic-shape)", "target_shape")
        h, w_ = n.inputs[0].get_partial_shape().to_shape()[2:]
        pad, adj = [], []
        for size, s, k, d, t in zip((h, w_), stride, kernel, dilate, target):
            total = s * (size - 1) + d * (k - 1) + 1 - t  # MXNet's InferPad
            if total < 0:
                raise Unsupported(f"target_shape {target} is larger than the deconvolution can produce", "target_shape")
            adj.append(total % 2)
            pad.append((total + 1) // 2)
    w = n.weight(1, "weight").astype(np.float32)
    g = n.attrs["num_group"]
    if g == 1:
        out = n.ops.convolution_backprop_data(n.inputs[0], n.const(w), stride, pads_begin=pad, pads_end=pad,
                                              dilations=dilate, output_padding=adj)
    else:
        c_in, f_g = w.shape[:2]
        weights = w.reshape(g, c_in // g, f_g, *w.shape[2:])
        out = n.ops.group_convolution_backprop_data(n.inputs[0], n.const(weights), stride, pads_begin=pad,
                                                    pads_end=pad, dilations=dilate, output_padding=adj)
    return _bias(n, out)


def activation(n: Node):
    x = n.inputs[0]
    return UNARY[n.attrs["act_type"]](n, x)


UNARY = {"relu": lambda n, x: n.ops.relu(x), "sigmoid": lambda n, x: n.ops.sigmoid(x),
         "tanh": lambda n, x: n.ops.tanh(x), "softrelu": lambda n, x: n.ops.softplus(x),
         "softsign": lambda n, x: n.ops.softsign(x)}


def _unary(name: str) -> Callable[[Node], Any]:
    return lambda n: UNARY[name](n, n.inputs[0])


def leaky_relu(n: Node):
    x, kind, slope = n.inputs[0], n.attrs["act_type"], n.attrs["slope"]
    if kind == "leaky":
        return n.ops.prelu(x, n.const([slope]))
    if kind == "elu":
        return n.ops.elu(x, slope)
    return n.ops.prelu(x, n.const(n.weight(1, "gamma").astype(np.float32).reshape(-1)))  # prelu


def pooling(n: Node):
    """Max/avg pooling, ``valid`` (floor) or ``full`` (ceil) convention, global or windowed.

    MXNet's average over a window reaching into the padding (count_include_pad, its default) divides by the part
    of the window inside the padded input; OpenVINO's AvgPool divides the last windows of a ``ceil`` output by
    the whole kernel (measured: 3 where MXNet divides by 2). So the padding is made explicit (a Pad of zeros) and
    the ``ceil`` overhang becomes end padding that the pool excludes.
    """
    x, a = n.inputs[0], n.attrs
    kind = a["pool_type"]
    if a["global_pool"]:
        axes = n.i64([2, 3])
        return n.ops.reduce_max(x, axes, True) if kind == "max" else n.ops.reduce_mean(x, axes, True)
    if not a["kernel"]:
        raise Unsupported("kernel is required unless global_pool is true", "kernel")
    kernel = list(a["kernel"])
    stride = list(a["stride"] or (1, 1))
    pad = list(a["pad"] or (0, 0))
    rounding = "ceil" if a["pooling_convention"] == "full" else "floor"
    if kind == "max":
        return n.ops.max_pool(x, stride, [1, 1], pad, pad, kernel, rounding_type=rounding).output(0)
    include_pad = True if a["count_include_pad"] is None else a["count_include_pad"]
    if include_pad and any(pad):
        x = n.ops.pad(x, n.i64([0, 0, *pad]), n.i64([0, 0, *pad]), "constant", n.const(0.0))
        if rounding == "floor":
            return n.ops.avg_pool(x, stride, [0, 0], [0, 0], kernel, exclude_pad=True, rounding_type="floor")
        # ceil: OpenVINO divides a window reaching past the input by the whole kernel; as end padding it is left
        # out. floor((L + s - 1 - k) / s) == ceil((L - k) / s): the same windows, the same output size.
        return n.ops.avg_pool(x, stride, [0, 0], [s - 1 for s in stride], kernel, exclude_pad=True,
                              rounding_type="floor")
    return n.ops.avg_pool(x, stride, pad, pad, kernel, exclude_pad=True, rounding_type=rounding)


def softmax_activation(n: Node):
    # instance mode: MXNet 1.9.1 computes it over the last axis (measured), whatever the input's rank.
    return n.ops.softmax(n.inputs[0], 1 if n.attrs["mode"] == "channel" else -1)


def reshape(n: Node):
    """MXNet's shape codes: k > 0 itself, 0 copy, -1 infer, -2 copy the rest, -3 merge two, -4 split one in two."""
    x, codes = n.inputs[0], list(n.attrs["shape"])
    if not codes:
        raise Unsupported("shape is required (the legacy target_shape is not supported)", "shape")
    if all(c >= -1 for c in codes):  # OpenVINO's special_zero has MXNet's meaning of 0 and -1
        return n.ops.reshape(x, n.i64(codes), True)
    rank = x.get_partial_shape().rank
    if rank.is_dynamic:
        raise Unsupported("shape codes -2/-3/-4 need an input of known rank", "shape")
    rank = rank.get_length()
    shape = n.ops.shape_of(x, "i64")

    def dim(i: int):
        if i >= rank:
            raise Unsupported(f"shape {tuple(codes)} refers to input axis {i}, the input has {rank}", "shape")
        return n.ops.gather(shape, n.i64([i]), n.i64(0))

    pieces, src, i = [], 0, 0
    while i < len(codes):
        c = codes[i]
        if c > 0 or c == -1:
            pieces.append(n.i64([c]))
            src += 1
        elif c == 0:
            pieces.append(dim(src))
            src += 1
        elif c == -2:
            if src < rank:
                pieces.append(n.ops.slice(shape, n.i64([src]), n.i64([rank]), n.i64([1])))
            src = rank
        elif c == -3:
            pieces.append(n.ops.multiply(dim(src), dim(src + 1)))
            src += 2
        elif c == -4:
            if i + 2 >= len(codes):
                raise Unsupported(f"shape {tuple(codes)}: -4 needs two values after it", "shape")
            d0, d1 = codes[i + 1], codes[i + 2]
            whole = dim(src)
            src += 1
            if d0 == -1 and d1 == -1 or d0 < -1 or d1 < -1 or d0 == 0 or d1 == 0:
                raise Unsupported(f"shape {tuple(codes)}: -4 {d0} {d1} is not a valid split", "shape")
            first = n.ops.divide(whole, n.i64([d1])) if d0 == -1 else n.i64([d0])
            second = n.ops.divide(whole, n.i64([d0])) if d1 == -1 else n.i64([d1])
            pieces += [first, second]
            i += 2
        else:
            raise Unsupported(f"shape code {c} is not an MXNet shape code", "shape")
        i += 1
    return n.ops.reshape(x, n.ops.concat(pieces, 0), False)


def flatten(n: Node):
    return n.ops.reshape(n.inputs[0], n.i64([0, -1]), True)


def fully_connected(n: Node):
    x = n.inputs[0]
    if n.attrs["flatten"]:
        x = n.ops.reshape(x, n.i64([0, -1]), True)
    w = n.weight(1, "weight").astype(np.float32)
    out = n.ops.matmul(x, n.const(w), False, True)
    if not n.attrs["no_bias"]:
        out = n.ops.add(out, n.const(n.weight(2, "bias").astype(np.float32)))
    return out


def batch_norm(n: Node):
    a = n.attrs
    if a["axis"] != 1:
        raise Unsupported("only axis 1 (channels) is supported", "axis")
    mean, var = n.weight(3, "moving_mean"), n.weight(4, "moving_var")
    gamma = np.ones_like(mean) if a["fix_gamma"] else n.weight(1, "gamma")
    beta = n.weight(2, "beta")
    return n.ops.batch_norm_inference(n.inputs[0], n.const(gamma), n.const(beta), n.const(mean), n.const(var),
                                      a["eps"])


def up_sampling(n: Node):
    if len(n.inputs) != 1:
        raise Unsupported("one input only", "num_args")
    s = float(n.attrs["scale"])
    return n.ops.interpolate(n.inputs[0], n.const([s, s]), "nearest", "scales", axes=n.i64([2, 3]),
                             coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def crop(n: Node):
    """Crop to the second input's height and width (or ``h_w``), from ``offset`` (top-left by default) or centred."""
    x, a = n.inputs[0], n.attrs
    if len(n.inputs) == 2:
        size = n.ops.slice(n.ops.shape_of(n.inputs[1], "i64"), n.i64([2]), n.i64([4]), n.i64([1]))
    elif len(n.inputs) == 1 and a["h_w"] and all(v > 0 for v in a["h_w"]):
        size = n.i64(a["h_w"])
    else:
        raise Unsupported("one input needs a positive h_w, or give a second input to crop like", "h_w")
    if a["center_crop"]:
        have = n.ops.slice(n.ops.shape_of(x, "i64"), n.i64([2]), n.i64([4]), n.i64([1]))
        begin = n.ops.divide(n.ops.subtract(have, size), n.i64([2]))
    else:
        begin = n.i64(a["offset"] or (0, 0))
    return n.ops.slice(x, begin, n.ops.add(begin, size), n.i64([1, 1]), n.i64([2, 3]))


def slice_axis(n: Node):
    a = n.attrs
    end = a["end"] if a["end"] is not None else np.iinfo(np.int64).max
    return n.ops.slice(n.inputs[0], n.i64([a["begin"]]), n.i64([end]), n.i64([1]), n.i64([a["axis"]]))


def concat(n: Node):
    return n.ops.concat(list(n.inputs), n.attrs["dim"])


def clip(n: Node):
    return n.ops.clamp(n.inputs[0], n.attrs["a_min"], n.attrs["a_max"])


def _binary(name: str) -> Callable[[Node], Any]:
    def build(n: Node):
        if len(n.inputs) != 2:
            raise Unsupported(f"expects 2 inputs, has {len(n.inputs)}")
        return getattr(n.ops, name)(n.inputs[0], n.inputs[1])

    return build


def add_n(n: Node):
    out = n.inputs[0]
    for x in n.inputs[1:]:
        out = n.ops.add(out, x)
    return out


def _scalar(name: str, reverse: bool = False) -> Callable[[Node], Any]:
    def build(n: Node):
        s = n.const(n.attrs["scalar"])
        a, b = (s, n.inputs[0]) if reverse else (n.inputs[0], s)
        return getattr(n.ops, name)(a, b)

    return build


def identity(n: Node):
    return n.inputs[0]


# --------------------------------------------------------------------------------------------------------- table

_CONV_COMMON = {
    "kernel": _pair("kernel", None, minimum=1),
    "stride": _pair("stride", "()", minimum=1),
    "dilate": _pair("dilate", "()", minimum=1),
    "pad": _pair("pad", "()"),
    "num_filter": Attr(None, as_int, lambda v: v > 0, "a positive integer"),
    "num_group": Attr("1", as_int, lambda v: v > 0, "a positive integer"),
    "layout": _attr_one_of("None", "None", "NCHW"),
}
_ACT = ("relu", "sigmoid", "tanh", "softrelu", "softsign")
_ARITH = {
    "add": ("elemwise_add", "_Plus", "_plus", "_add", "broadcast_add", "broadcast_plus"),
    "subtract": ("elemwise_sub", "_Minus", "_minus", "_sub", "broadcast_sub", "broadcast_minus"),
    "multiply": ("elemwise_mul", "_Mul", "_mul", "broadcast_mul"),
    "divide": ("elemwise_div", "_Div", "_div", "broadcast_div"),
}
_SCALAR_ATTRS = {"scalar": Attr(None, as_float, None, "a number"), "is_int": Attr("False", as_bool)}

OPS: dict[str, OpSpec] = {
    "Convolution": OpSpec(convolution, {**_CONV_COMMON, "no_bias": Attr("False", as_bool)},
                          "Convolution / GroupConvolution (+ Add of the bias)"),
    "Deconvolution": OpSpec(deconvolution, {
        **_CONV_COMMON, "no_bias": Attr("True", as_bool), "adj": _pair("adj", "()"),
        "target_shape": _pair("target_shape", "()")},
        "ConvolutionBackpropData / GroupConvolutionBackpropData; weights (C_in, F/G, k, k) regrouped"),
    "Activation": OpSpec(activation, {"act_type": _attr_one_of(None, *_ACT)}, "Relu, Sigmoid, Tanh, SoftPlus, SoftSign"),
    **{op: OpSpec(_unary(op), {}, op.capitalize()) for op in ("relu", "sigmoid", "tanh")},
    "LeakyReLU": OpSpec(leaky_relu, {"act_type": _attr_one_of("leaky", "leaky", "elu", "prelu"),
                                     "slope": Attr("0.25", as_float), "lower_bound": Attr("0.125", as_float),
                                     "upper_bound": Attr("0.334", as_float)}, "PRelu (leaky, prelu), Elu"),
    "Pooling": OpSpec(pooling, {
        "kernel": Attr("()", as_tuple, lambda v: len(v) in (0, 2) and all(x > 0 for x in v),
                       "2 positive values (2-D kernel)"),
        "pool_type": _attr_one_of("max", "max", "avg"),
        "global_pool": Attr("False", as_bool),
        "pooling_convention": _attr_one_of("valid", "valid", "full"),
        "stride": _pair("stride", "()", minimum=1), "pad": _pair("pad", "()"),
        "count_include_pad": Attr("None", lambda t: None if _none(t) else as_bool(t)),
        "layout": _attr_one_of("None", "None", "NCHW"),
    }, "MaxPool / AvgPool (floor or ceil), ReduceMax / ReduceMean (global); avg with padding: explicit Pad"),
    "SoftmaxActivation": OpSpec(softmax_activation, {"mode": _attr_one_of("instance", "instance", "channel")},
                                "Softmax over axis 1 (channel) or the last axis (instance)"),
    "Reshape": OpSpec(reshape, {"shape": Attr("()", as_tuple), "reverse": _attr_one_of("False", False, parse=as_bool),
                                "target_shape": Attr("()", as_tuple, lambda v: not v, "empty (legacy)"),
                                "keep_highest": _attr_one_of("False", False, parse=as_bool)},
                      "Reshape (codes 0/-1: special_zero; -2/-3/-4: from ShapeOf)"),
    "Flatten": OpSpec(flatten, {}, "Reshape [0, -1]"),
    "FullyConnected": OpSpec(fully_connected, {"num_hidden": Attr(None, as_int, lambda v: v > 0, "a positive integer"),
                                               "no_bias": Attr("False", as_bool), "flatten": Attr("True", as_bool)},
                             "MatMul (transposed weights) + Add"),
    "BatchNorm": OpSpec(batch_norm, {"eps": Attr("0.001", as_float), "fix_gamma": Attr("True", as_bool),
                                     "use_global_stats": Attr("False", as_bool),
                                     "output_mean_var": _attr_one_of("False", False, parse=as_bool),
                                     "axis": Attr("1", as_int)}, "BatchNormInference (fix_gamma: gamma = 1)"),
    "UpSampling": OpSpec(up_sampling, {"scale": Attr(None, as_int, lambda v: v > 0, "a positive integer"),
                                       "sample_type": _attr_one_of(None, "nearest"),
                                       "num_args": _attr_one_of("1", 1, parse=as_int),
                                       "num_filter": Attr("0", as_int), "multi_input_mode": Attr("concat")},
                       "Interpolate nearest (asymmetric, floor)"),
    "Crop": OpSpec(crop, {"num_args": _attr_one_of(None, 1, 2, parse=as_int), "offset": _pair("offset", "(0, 0)"),
                          "h_w": _pair("h_w", "(0, 0)"), "center_crop": Attr("False", as_bool)},
                   "Slice of height and width (top-left from offset, or centred)"),
    "slice_axis": OpSpec(slice_axis, {"axis": Attr(None, as_int), "begin": Attr(None, as_int),
                                      "end": Attr(None, as_opt_int)}, "Slice"),
    "Concat": OpSpec(concat, {"dim": Attr("1", as_int), "num_args": Attr(None, as_int)}, "Concat"),
    "clip": OpSpec(clip, {"a_min": Attr(None, as_float), "a_max": Attr(None, as_float)}, "Clamp"),
    "add_n": OpSpec(add_n, {"num_args": Attr(None, as_int)}, "Add chain"),
    "ElementWiseSum": OpSpec(add_n, {"num_args": Attr(None, as_int)}, "Add chain"),
    "Dropout": OpSpec(identity, {"p": Attr("0.5", as_float), "mode": Attr("training"), "axes": Attr("()", as_tuple)},
                      "nothing (inference)"),
    "BlockGrad": OpSpec(identity, {}, "nothing"),
    "_copy": OpSpec(identity, {}, "nothing"),
    **{op: OpSpec(_binary(name), {}, name.capitalize() + " (numpy broadcasting)")
       for name, names in _ARITH.items() for op in names},
    "_plus_scalar": OpSpec(_scalar("add"), _SCALAR_ATTRS, "Add"),
    "_minus_scalar": OpSpec(_scalar("subtract"), _SCALAR_ATTRS, "Subtract"),
    "_rminus_scalar": OpSpec(_scalar("subtract", reverse=True), _SCALAR_ATTRS, "Subtract (scalar - x)"),
    "_mul_scalar": OpSpec(_scalar("multiply"), _SCALAR_ATTRS, "Multiply"),
    "_div_scalar": OpSpec(_scalar("divide"), _SCALAR_ATTRS, "Divide"),
    "_rdiv_scalar": OpSpec(_scalar("divide", reverse=True), _SCALAR_ATTRS, "Divide (scalar / x)"),
}

# Inputs of these ops that may be weights (variables from the params file), by position; any other input must be
# a tensor computed in the graph (or the data input).
WEIGHT_INPUTS: dict[str, tuple[int, ...]] = {
    "Convolution": (1, 2), "Deconvolution": (1, 2), "FullyConnected": (1, 2), "BatchNorm": (1, 2, 3, 4),
    "LeakyReLU": (1,),
}
