"""MXNet symbol + params -> ``openvino.Model``, without MXNet and without Model Optimizer.

The symbol JSON and the ``.params`` file are read by the pure numpy :mod:`ssh_toolkit.mxnet_format`; each node
is translated by its entry in :data:`ssh_toolkit.native.ops.OPS` (anything else is a :class:`UsageError` naming
the node, the op and the attribute). Every translated node's output tensor is named ``{node, node:0}``: the
graph outputs carry MXNet's head names and the ``:0`` names Model Optimizer's IRs have, and every intermediate
tensor can be found by its MXNet node's name (``localize`` relies on that). The preprocessing Model Optimizer's
``--reverse_input_channels``/``--mean_values``/``--scale_values`` fold into an IR is added with OpenVINO's
``PrePostProcessor``, in Model Optimizer's order: reverse the channels first, then subtract the mean (given in
the original model's channel order), then divide by the scale.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..errors import UsageError
from ..mxnet_format import ARG_PREFIX, AUX_PREFIX, SymbolInfo, read_params, read_symbol
from .ops import OPS, PERFORMANCE_ATTRS, WEIGHT_INPUTS, Node, Unsupported

OPSET = "opset13"
# Model Optimizer arguments the native route understands (the card's convert.model_optimizer_args).
_MO_FLAG = re.compile(r"^--(?P<key>[a-z_]+)(=(?P<value>.*))?$")


@dataclass(frozen=True)
class Preprocess:
    """What Model Optimizer's input flags ask for: the meaning the native route gives the same card keys."""

    reverse_channels: bool = False
    mean: tuple[float, ...] | None = None  # in the original model's channel order
    scale: tuple[float, ...] | None = None

    @classmethod
    def from_mo_args(cls, args: Sequence[str], input_name: str, source: object = "the card") -> "Preprocess":
        """``--reverse_input_channels``, ``--mean_values=NAME[v,...]``, ``--scale_values=NAME[v,...]`` (and
        ``--input=NAME``); any other Model Optimizer argument is a UsageError: the native route cannot honour it."""
        reverse, mean, scale = False, None, None
        for a in args:
            m = _MO_FLAG.match(a.strip())
            key = m.group("key") if m else a
            value = m.group("value") if m else None
            if key == "reverse_input_channels" and value is None:
                reverse = True
            elif key in ("mean_values", "scale_values") and value is not None:
                vm = re.fullmatch(rf"(?:{re.escape(input_name)})?\[([^\]]*)\]", value.strip())
                if not vm:
                    raise UsageError(f"{source}: convert.model_optimizer_args {a!r}: the native route reads "
                                     f"'--{key}={input_name}[v1,v2,v3]' (one value per channel)")
                values = tuple(float(v) for v in vm.group(1).split(","))
                if key == "mean_values":
                    mean = values
                else:
                    scale = values
            elif key == "input" and value == input_name:
                continue
            else:
                raise UsageError(f"{source}: convert.model_optimizer_args {a!r} has no meaning in the native route "
                                 f"(it reads --input={input_name}, --mean_values, --scale_values and "
                                 f"--reverse_input_channels); use --route mo")
        return cls(reverse, mean, scale)


def _parse_attrs(path: Path, node, spec) -> dict:
    attrs = {}
    for key, text in node.attrs.items():
        if key.startswith("__") or key in PERFORMANCE_ATTRS:
            continue
        if key not in spec.attrs:
            raise UsageError(f"{path}: node {node.name!r} (op {node.op}): attribute {key}={text!r} is not supported by "
                             f"the native route (supported attributes: {', '.join(spec.attrs) or 'none'}); "
                             f"use --route mo")
    for key, a in spec.attrs.items():
        text = node.attrs.get(key, a.default)
        if text is None:
            raise UsageError(f"{path}: node {node.name!r} (op {node.op}): attribute {key} is required")
        try:
            value = a.parse(text)
        except (ValueError, SyntaxError, TypeError):
            raise UsageError(f"{path}: node {node.name!r} (op {node.op}): attribute {key}={text!r} cannot be read"
                             ) from None
        if a.allowed is not None and not a.allowed(value):
            raise UsageError(f"{path}: node {node.name!r} (op {node.op}): attribute {key}={text!r} is not supported "
                             f"by the native route (supported: {a.supported}); use --route mo")
        attrs[key] = value
    return attrs


def translate(symbol: SymbolInfo, params: Mapping[str, np.ndarray], *, input_name: str = "data",
              input_shape: Sequence[int | None] = (1, 3, None, None), preprocess: Preprocess = Preprocess(),
              outputs: Sequence[str] | None = None):
    """The ``openvino.Model`` of ``symbol`` with the weights ``params`` (``arg:``/``aux:`` names, as in the file).

    ``input_shape``: ``None`` (or -1) marks a dynamic dimension. ``outputs``: head names to keep, in this order
    (default: all heads in the symbol's order). Raises UsageError for an op, attribute or input the table lacks.
    """
    import importlib

    import openvino as ov

    ops = importlib.import_module(f"openvino.{OPSET}")
    path = symbol.path
    dims = [-1 if d is None or d < 0 else int(d) for d in input_shape]
    static = all(d >= 0 for d in dims)
    parameter = ops.parameter(ov.PartialShape(dims), ov.Type.f32, name=input_name)
    parameter.output(0).get_tensor().set_names({input_name, f"{input_name}:0"})

    def weights_of(name: str) -> np.ndarray | None:
        for prefix in (ARG_PREFIX, AUX_PREFIX):
            if prefix + name in params:
                return np.asarray(params[prefix + name])
        return None

    tensors: dict[int, object] = {}
    constants: dict[int, object] = {}
    nodes = symbol.nodes
    used = _used_nodes(symbol, outputs)
    for index, node in enumerate(nodes):
        if index not in used:
            continue
        if node.is_variable:
            if node.name == input_name:
                tensors[index] = parameter.output(0)
            continue
        spec = OPS.get(node.op)
        if spec is None:
            raise UsageError(f"{path}: node {node.name!r}: op {node.op!r} is not supported by the native route "
                             f"(supported: {', '.join(sorted(OPS))}); use --route mo")
        attrs = _parse_attrs(path, node, spec)
        inputs, weights = [], []
        for k, (src, port) in enumerate(node.inputs):
            source = nodes[src]
            if port != 0:
                raise UsageError(f"{path}: node {node.name!r} (op {node.op}): input {k} is output {port} of "
                                 f"{source.name!r}; the native route handles single-output nodes only")
            if source.is_variable and source.name != input_name:
                w = weights_of(source.name)
                if w is None:
                    raise UsageError(f"{path}: node {node.name!r} (op {node.op}): no weights for {source.name!r} in "
                                     f"the params file")
                weights.append(w)
                if k in WEIGHT_INPUTS.get(node.op, ()):
                    inputs.append(None)
                else:
                    if src not in constants:
                        c = ops.constant(w.astype(np.float32) if w.dtype.kind == "f" else w)
                        c.set_friendly_name(source.name)
                        constants[src] = c.output(0)
                    inputs.append(constants[src])
            else:
                weights.append(None)
                inputs.append(tensors[src])
        built = Node(node.name, node.op, [x for x in inputs if x is not None], attrs, weights, ops, static)
        try:
            out = spec.build(built)
        except Unsupported as e:
            where = f"attribute {e.attr}" if e.attr else "inputs"
            raise UsageError(f"{path}: node {node.name!r} (op {node.op}): {where}: {e}; use --route mo") from None
        except RuntimeError as e:  # OpenVINO's shape inference refused the node (e.g. mismatched shapes)
            from ..runners.openvino import reason

            raise UsageError(f"{path}: node {node.name!r} (op {node.op}): OpenVINO refuses it: {reason(e)}") from None
        out = out if hasattr(out, "get_tensor") else out.output(0)
        tensor = out.get_tensor()
        names = {node.name, f"{node.name}:0"}
        if tensor.get_names():  # an identity op: the same tensor under one more node's names
            tensor.add_names(names)
        else:
            tensor.set_names(names)
            out.get_node().set_friendly_name(node.name)
        tensors[index] = out

    heads = _heads(symbol, outputs)
    results = [ops.result(tensors[index]) for index in heads]
    model = ov.Model(results, [parameter], path.name.removesuffix(".json").removesuffix("-symbol"))
    return _with_preprocessing(model, input_name, preprocess)


def _heads(symbol: SymbolInfo, outputs: Sequence[str] | None) -> list[int]:
    by_name = {n.name: i for i, n in enumerate(symbol.nodes)}
    heads = [name for name, _ in symbol.heads]
    for name, port in symbol.heads:
        if port != 0:
            raise UsageError(f"{symbol.path}: head {name!r} is output {port} of its node; the native route handles "
                             f"single-output nodes only")
    if outputs is None:
        return [by_name[h] for h in heads]
    missing = [o for o in outputs if o not in heads]
    if missing:
        raise UsageError(f"{symbol.path}: the symbol has no output(s) {missing}; its heads are {heads}")
    return [by_name[o] for o in outputs]


def _used_nodes(symbol: SymbolInfo, outputs: Sequence[str] | None) -> set[int]:
    todo = list(_heads(symbol, outputs))
    used: set[int] = set()
    while todo:
        i = todo.pop()
        if i not in used:
            used.add(i)
            todo.extend(src for src, _ in symbol.nodes[i].inputs)
    return used


def _with_preprocessing(model, input_name: str, pre: Preprocess):
    if not (pre.reverse_channels or pre.mean or pre.scale):
        return model
    from openvino import Layout
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    port = ppp.input(input_name)
    port.tensor().set_layout(Layout("NCHW"))
    port.model().set_layout(Layout("NCHW"))
    steps = port.preprocess()
    if pre.reverse_channels:
        steps.reverse_channels()
    if pre.mean:
        steps.mean(list(pre.mean))
    if pre.scale:
        steps.scale(list(pre.scale))
    model = ppp.build()
    model.input(0).get_tensor().set_names({input_name, f"{input_name}:0"})
    return model


def translate_files(symbol_path: str | Path, params_path: str | Path, **kwargs):
    """:func:`translate` of a checkpoint's two files (read with the pure numpy reader)."""
    input_name = kwargs.get("input_name", "data")
    return translate(read_symbol(symbol_path, (input_name,)), read_params(params_path), **kwargs)
