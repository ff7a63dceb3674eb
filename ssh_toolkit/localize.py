"""``ssh-toolkit localize``: the first layer where an IR parts from MXNet, and the weight constant feeding it.

One image goes through MXNet with its internal outputs (``Symbol.get_internals()``) and through the IR with the
matching intermediate tensors added as outputs; each layer is compared (:mod:`.metric.layers`) in MXNet's node
order. What has to be respected (see docs/localize.md):

- MXNet's default MKLDNN subgraph backend fuses a convolution with its ReLU, and the internals of a fused graph
  are wrong (a ReLU output equals its input). The internals are bound with ``MXNET_SUBGRAPH_BACKEND=NONE``;
  MXNet reads that variable when a graph is bound (``graph_executor.cc``), not when it is imported, so it is set
  around the bind only and the normal runner keeps its default. The internals run's final outputs must agree
  with a normal run's (``localize.internals_atol``), else the reference is not trusted (EnvironmentProblem).
- Adding outputs to an IR can change OpenVINO's fusions: each pass's final outputs are compared with those of
  the IR compiled as it is, and a difference is reported as a warning.
- All 82 internals of SSH at 640x640 on both sides are gigabytes: the layers go in passes of at most
  ``localize.batch_mb`` of tensors per side, compared one by one and dropped before the next pass.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .card import ModelCard
from .errors import BackendError, EnvironmentProblem, UsageError
from .metric.layers import LayerDiff, compare_layer, first_over, missing_layer
from .workspace import Checkpoint, Workspace

SUBGRAPH_ENV = "MXNET_SUBGRAPH_BACKEND"
# The ops a weight constant feeds on its input 1 (the others' constants are biases, shapes, scales).
FLOAT_TYPES = ("f32", "f16", "bf16", "f64")
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "ConvolutionBackpropData", "GroupConvolutionBackpropData",
                "MatMul")


# ------------------------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class WeightConstant:
    """A Constant of the IR feeding the flagged layer, found by walking the graph's edges (not by name)."""

    name: str  # the Constant's friendly name (the layer name in the IR's .xml)
    shape: tuple[int, ...]
    element_type: str
    consumer: str  # "<op type> '<friendly name>'" of the op it feeds
    port: int  # which input of the consumer
    via: tuple[str, ...] = ()  # op types between the Constant and the consumer (Convert, Multiply, ...)

    @property
    def is_float(self) -> bool:
        return self.element_type in FLOAT_TYPES

    def describe(self) -> str:
        path = f" via {' -> '.join(self.via)}" if self.via else ""
        return (f"{self.name!r} {self.element_type} [{','.join(map(str, self.shape))}] "
                f"(input {self.port} of {self.consumer}{path})")


@dataclass
class Localization:
    """What ``localize`` found: every layer's figures in MXNet node order, the first one over the threshold."""

    model: str
    precision: str  # the card's key: FP32, FP32@bf16, ...
    xml: str
    image: str
    input_size: int
    weights: str  # real | standin
    checkpoint_kind: str
    threshold: float
    layers: list[LayerDiff]
    first: int | None
    constants: list[WeightConstant]  # feeding the first flagged layer; the weight first
    final_drift: float  # max |final outputs with extra outputs - without| over the passes
    internals_check: float  # max |MXNet internals run - normal run| over the final outputs
    passes: int
    peak_rss_mb: float
    seconds: float
    warnings: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> LayerDiff | None:
        return None if self.first is None else self.layers[self.first]

    @property
    def weight(self) -> WeightConstant | None:
        """The weight of the flagged layer: the first of ``constants`` when it holds numbers (a Crop's integer
        bounds are constants, not weights)."""
        return self.constants[0] if self.constants and self.constants[0].is_float else None

    def verdict(self) -> str:
        n = sum(d.compared for d in self.layers)
        if self.first is None:
            return (f"no divergence: all {n} compared layers within scaled max abs {self.threshold:.1e} "
                    f"({self.precision})")
        d = self.flagged
        how = d.problem or f"scaled max abs {d.scaled_max_abs:.3e} > {self.threshold:.1e}"
        w = (f"; weight constant {self.weight.describe()}" if self.weight
             else "; no weight constant feeds it (its inputs come from earlier layers)")
        return f"first divergence at layer {self.first + 1} of {len(self.layers)}: {d.node} ({d.op}), {how}{w}"

    def to_frame(self):
        import pandas as pd

        rows = []
        for i, d in enumerate(self.layers):
            rows.append({"depth": i + 1, **d.as_row(), "over": d.over(self.threshold),
                         "first": i == self.first})
        return pd.DataFrame(rows)

    def to_json(self) -> dict[str, Any]:
        def num(v: float) -> float | str:
            return v if math.isfinite(v) else str(v)

        return {
            "model": self.model, "precision": self.precision, "xml": self.xml, "image": self.image,
            "input_size": self.input_size, "weights": self.weights, "checkpoint_kind": self.checkpoint_kind,
            "threshold": self.threshold, "verdict": self.verdict(),
            "first": None if self.first is None else self.layers[self.first].node,
            "weight_constants": [c.__dict__ | {"shape": list(c.shape), "via": list(c.via)} for c in self.constants],
            "final_drift": self.final_drift, "internals_check": self.internals_check, "passes": self.passes,
            "peak_rss_mb": self.peak_rss_mb, "seconds": self.seconds, "warnings": self.warnings,
            "layers": [{k: (num(v) if isinstance(v, float) else v) for k, v in d.as_row().items()}
                       | {"over": d.over(self.threshold)} for d in self.layers],
        }


# ------------------------------------------------------------------------------------------------ MXNet side
@contextlib.contextmanager
def _without_subgraph_notice() -> Iterator[None]:
    """Keep MXNet's 'MXNET_SUBGRAPH_BACKEND=NONE is detected' log line (fd 2) off the terminal; anything else
    it writes there is passed on."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (captured by a test runner)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            rest = [ln for ln in held.read().splitlines(keepends=True) if b"is detected, subgraph backend" not in ln]
            if rest:
                os.write(2, b"".join(rest))


@contextlib.contextmanager
def subgraph_backend_none() -> Iterator[None]:
    """``MXNET_SUBGRAPH_BACKEND=NONE`` while MXNet binds a graph (it reads it then); restored afterwards."""
    before = os.environ.get(SUBGRAPH_ENV)
    os.environ[SUBGRAPH_ENV] = "NONE"
    try:
        with _without_subgraph_notice():
            yield
    finally:
        if before is None:
            os.environ.pop(SUBGRAPH_ENV, None)
        else:
            os.environ[SUBGRAPH_ENV] = before


class MXNetInternals:
    """The checkpoint with any subset of its internal outputs, bound without the MKLDNN subgraph backend."""

    def __init__(self, checkpoint: Checkpoint, input_name: str, input_size: int) -> None:
        from .runners.mxnet import checkpoint_prefix
        from .runners.mxnet_import import import_mxnet

        self.mx = mx = import_mxnet()
        self.checkpoint = checkpoint
        self.input_name = input_name
        self.shape = (1, 3, input_size, input_size)
        try:
            sym, self.args, self.auxs = mx.model.load_checkpoint(checkpoint_prefix(checkpoint), checkpoint.epoch)
            self.internals = sym.get_internals()
            _, out_shapes, _ = self.internals.infer_shape(**{input_name: self.shape})
        except mx.base.MXNetError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BackendError(f"{checkpoint.params_path}: MXNet cannot load the checkpoint: {first}") from None
        self.symbol = sym
        self.heads = sym.list_outputs()
        self.shapes = dict(zip(self.internals.list_outputs(), (tuple(s) for s in out_shapes)))

    def forward(self, names: Sequence[str], tensor: np.ndarray) -> list:
        """The internal outputs ``names`` (``<node>_output``) for ``tensor``, as MXNet NDArrays (held by MXNet;
        ``asnumpy()`` one at a time)."""
        mx = self.mx
        group = mx.sym.Group([self.internals[n] for n in names])
        with subgraph_backend_none():
            exe = group.simple_bind(mx.cpu(), grad_req="null", **{self.input_name: self.shape})
        for name, arr in exe.arg_dict.items():
            if name != self.input_name:
                self.args[name].copyto(arr)
        for name, arr in exe.aux_dict.items():
            self.auxs[name].copyto(arr)
        exe.arg_dict[self.input_name][:] = mx.nd.array(tensor, dtype="float32")
        return exe.forward(is_train=False)


def mxnet_layers(checkpoint: Checkpoint) -> list[tuple[str, str]]:
    """``(node, op)`` of every operator node of the symbol, in the file's (topological) node order."""
    from .mxnet_format import read_symbol

    return [(n.name, n.op) for n in read_symbol(checkpoint.symbol_path).nodes if not n.is_variable]


def check_internals(normal: dict[str, np.ndarray], internals: dict[str, np.ndarray], atol: float) -> float:
    """The largest difference between the final outputs of MXNet's internals run and its normal run; an
    EnvironmentProblem when it exceeds ``atol`` (the per-layer reference would not be MXNet's own result)."""
    worst, where = 0.0, ""
    for name, ref in normal.items():
        got = internals[name]
        d = float(np.abs(got.astype(np.float64) - ref).max()) if got.shape == ref.shape else math.inf
        if not d <= worst:
            worst, where = d, name
    if not worst <= atol:
        raise EnvironmentProblem(
            f"MXNet with every internal output ({SUBGRAPH_ENV}=NONE) gives final outputs that differ from its "
            f"normal run by {worst:.3e} (output {where}; localize.internals_atol {atol:.1e}): its per-layer "
            f"outputs cannot serve as the reference on this MXNet build")
    return worst


# ------------------------------------------------------------------------------------------------ IR side
def ir_tensors(model) -> dict[str, Any]:
    """Tensor name -> the output port carrying it, over every op but Results (a final output's name sits on
    the port that feeds its Result)."""
    index = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Result":
            continue
        for out in op.outputs():
            for name in out.get_names():
                index.setdefault(name, out)
    return index


def find_tensor(index: dict[str, Any], node: str):
    """The IR tensor of MXNet node ``node``: named ``<node>:0`` (Model Optimizer) or ``<node>`` (native)."""
    return index.get(f"{node}:0") or index.get(node)


def _key(out) -> tuple[str, int]:
    return out.get_node().get_name(), out.get_index()


def feeding_constants(model, flagged, other_layers: Sequence[Any]) -> list[WeightConstant]:
    """The Constants that feed the ops computing ``flagged`` (an output port), found through the graph's edges.

    Walks back from the port's producer through the ops of that layer, stopping at the tensors of the other
    MXNet layers (``other_layers``) and the Parameter; every input that does not depend on the Parameter is
    traced back through Convert, Multiply, Reshape, ... to its Constants. The weight (input 1 of a
    convolution or MatMul; else the largest) comes first.
    """
    depends: dict[str, bool] = {}
    for op in model.get_ordered_ops():
        depends[op.get_name()] = op.get_type_name() == "Parameter" or any(
            depends.get(i.get_source_output().get_node().get_name(), False) for i in op.inputs())
    stop = {_key(o) for o in other_layers} - {_key(flagged)}
    found: list[WeightConstant] = []
    seen: set[str] = set()
    queue = [flagged.get_node()]
    while queue:
        op = queue.pop(0)
        if op.get_name() in seen:
            continue
        seen.add(op.get_name())
        for port, inp in enumerate(op.inputs()):
            src = inp.get_source_output()
            node = src.get_node()
            if not depends[node.get_name()]:
                for const, via in _constants_behind(node):
                    found.append(WeightConstant(
                        const.get_friendly_name(), tuple(int(d) for d in const.get_output_shape(0)),
                        str(const.get_output_element_type(0).get_type_name()),
                        f"{op.get_type_name()} {op.get_friendly_name()!r}", port, via))
            elif _key(src) not in stop and node.get_type_name() != "Parameter":
                queue.append(node)

    def rank(c: WeightConstant) -> tuple[int, int, int]:
        weight = c.consumer.split(" ", 1)[0] in WEIGHTED_OPS and c.port == 1
        return (0 if weight else 1, 0 if c.is_float else 1, -int(np.prod(c.shape or (1,))))

    return sorted(found, key=rank)


def _constants_behind(node, via: tuple[str, ...] = ()) -> list[tuple[Any, tuple[str, ...]]]:
    if node.get_type_name() == "Constant":
        return [(node, via)]
    out = []
    for inp in node.inputs():
        out += _constants_behind(inp.get_source_output().get_node(), (node.get_type_name(), *via))
    return out


# ------------------------------------------------------------------------------------------------ the run
def localize_config(config: dict[str, str]) -> dict[str, str]:
    """The model's runtime configuration for one image at a time (its precision pinned as the model's name
    says); the same for the IR as it is and with the extra outputs."""
    return {**config, "PERFORMANCE_HINT": "LATENCY"}


def _passes(layers: Sequence[tuple[str, str]], nbytes: dict[str, int], budget: int) -> list[list[int]]:
    """Consecutive groups of layer indices holding at most ``budget`` bytes each (a bigger layer goes alone)."""
    groups: list[list[int]] = []
    size = 0
    for i, (node, _) in enumerate(layers):
        b = nbytes.get(node, 0)
        if not groups or size + b > budget:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += b
    return groups


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def localize(card: ModelCard, checkpoint: Checkpoint, workspace: Workspace, model: str, image: str | Path, *,
             input_size: int | None = None, threshold: float | None = None, progress: bool = True) -> Localization:
    """Compare every MXNet layer with the IR model ``model`` (ir-fp32, ir-fp16, ir-fp32@bf16, ...) on ``image``."""
    from .evaluation import load_irs
    from .inference import model_set

    if model == "mxnet":
        raise UsageError("--model mxnet: localize compares an IR model (e.g. ir-fp32) against MXNet")
    size = card.resolve_input_size(input_size)
    base, at, suffix = model.partition("@")
    exec_precision = suffix if at else "f32"
    if exec_precision not in ("f32", "bf16") or suffix == "f32":  # (--exec-precision is evaluate's, not localize's)
        raise UsageError(f"--model {model}: localize runs an IR pinned at f32 or bf16 ({base} or {base}@bf16)")
    irs = load_irs(card, checkpoint, workspace, size)
    mut = model_set(card, checkpoint, irs, size, names=[model], exec_precisions=(exec_precision,))[0]
    runner = mut.make_runner()
    return localize_ir(card, checkpoint, runner.xml, image, model=model, precision=mut.precision,
                       config=runner.config, input_size=size, threshold=threshold, progress=progress)


def localize_ir(card: ModelCard, checkpoint: Checkpoint, xml: str | Path, image: str | Path, *, model: str,
                precision: str, config: dict[str, str], input_size: int, threshold: float | None = None,
                progress: bool = True) -> Localization:
    """:func:`localize` on the IR file ``xml``, run with ``config`` and judged as the card's ``precision``."""
    from openvino import Core
    from tqdm import tqdm

    from .data.wider import read_image
    from .model.outputs import canonical_name
    from .model.preprocess import resize, to_tensor
    from .runners.mxnet import MXNetRunner
    from .runners.openvino import read_model, reason

    start = time.perf_counter()
    if card.localize is None:
        raise UsageError(f"{card.path}: the card has no 'localize' section (thresholds and pass size)")
    size = input_size
    config = localize_config(config)
    limit = card.localize.threshold.get(precision) if threshold is None else threshold
    if limit is None:
        raise UsageError(f"{card.path}: no localize.threshold for {precision}; give --threshold")

    img = read_image(Path(image))
    resized = resize(img, size).image
    x_mx = to_tensor(resized, card.preprocess["mxnet"])
    x_ir = to_tensor(resized, card.preprocess["ir"])

    # The reference: MXNet's normal run, then its internals run must agree with it on the final outputs.
    with MXNetRunner(checkpoint, card.input.name, size, card.output_names) as mx_runner:
        normal = mx_runner.infer(x_mx).arrays
    mxi = MXNetInternals(checkpoint, card.input.name, size)
    heads = mxi.forward(mxi.heads, x_mx)
    internals_finals = {canonical_name(n): h.asnumpy() for n, h in zip(mxi.heads, heads)}
    del heads
    agree = check_internals({n: normal[n] for n in card.output_names}, internals_finals, card.localize.internals_atol)
    del internals_finals

    core = Core()
    try:
        plain = core.compile_model(read_model(core, xml), "CPU", config)
    except RuntimeError as e:
        raise BackendError(f"{xml}: OpenVINO cannot compile the IR: {reason(e)}") from None
    request = plain.create_infer_request()
    request.infer({0: x_ir})
    finals = {canonical_name(o.get_any_name()): request.get_tensor(o).data.copy() for o in plain.outputs}
    del request, plain

    layers = mxnet_layers(checkpoint)
    base = read_model(core, xml)
    index = ir_tensors(base)
    nbytes = {node: 4 * int(np.prod(mxi.shapes.get(f"{node}_output", (0,)))) for node, _ in layers}
    groups = _passes(layers, nbytes, card.localize.batch_mb << 20)
    results: list[LayerDiff | None] = [None] * len(layers)
    drift = 0.0
    warnings: list[str] = []
    with tqdm(total=len(layers), desc=f"localize {model}", unit="layer", disable=not progress) as bar:
        for group in groups:
            m = read_model(core, xml)
            idx = ir_tensors(m)
            present = [i for i in group if find_tensor(idx, layers[i][0]) is not None]
            for i in group:
                if i not in present:
                    node, op = layers[i]
                    results[i] = missing_layer(node, op, mxi.shapes.get(f"{node}_output", ()))
            outputs = [find_tensor(idx, layers[i][0]) for i in present]
            finals_ports = {_key(r.input(0).get_source_output()) for r in m.get_results()}
            extra = [o for o in outputs if _key(o) not in finals_ports]
            if extra:
                m.add_outputs(extra)
            try:
                compiled = core.compile_model(m, "CPU", config)
            except RuntimeError as e:
                raise BackendError(f"{xml}: OpenVINO cannot compile the IR with extra outputs: {reason(e)}") from None
            request = compiled.create_infer_request()
            request.infer({0: x_ir})
            for o in compiled.outputs:
                name = canonical_name(o.get_any_name())
                if name in finals:
                    drift = max(drift, float(np.abs(request.get_tensor(o).data.astype(np.float64)
                                                    - finals[name]).max()))
            ref = mxi.forward([f"{layers[i][0]}_output" for i in present], x_mx)
            for k, i in enumerate(present):
                node, op = layers[i]
                port = find_tensor(idx, node)
                test = request.get_tensor(compiled.output(next(iter(port.get_names())))).data
                r = ref[k].asnumpy()
                results[i] = compare_layer(node, op, r, test)
                del r
                bar.update(1)
            bar.update(len(group) - len(present))
            del ref, request, compiled, m
    if drift > 0:
        warnings.append(f"the IR's final outputs change by up to {drift:.3e} when intermediate tensors are added as "
                        f"outputs (OpenVINO fuses differently): the per-layer figures describe that variant")
    missing = [d.node for d in results if d is not None and not d.compared and not d.over(limit)]
    if missing:
        warnings.append(f"{len(missing)} MXNet layer(s) have no tensor in the IR (folded or fused away by the "
                        f"converter), not compared: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    diffs = [d for d in results if d is not None]
    first = first_over(diffs, limit)
    constants = []
    if first is not None and diffs[first].node:
        port = find_tensor(index, diffs[first].node)
        if port is not None:
            others = [p for p in (find_tensor(index, n) for n, _ in layers) if p is not None]
            others += [p.output(0) for p in base.get_parameters()]
            constants = feeding_constants(base, port, others)
    return Localization(
        model=model, precision=precision, xml=_shown(Path(xml)), image=_shown(Path(image).resolve()), input_size=size,
        weights=checkpoint.weights, checkpoint_kind=checkpoint.kind, threshold=float(limit), layers=diffs,
        first=first, constants=constants, final_drift=drift, internals_check=agree, passes=len(groups),
        peak_rss_mb=_peak_rss_mb(), seconds=time.perf_counter() - start, warnings=warnings)


def _shown(path: Path) -> str:
    """``path`` as text every report can hold: bytes of a name that is not UTF-8 as ``\\xff`` escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def write_localize_report(directory: str | Path, loc: Localization, checked=None) -> Path:
    """``localize.csv``, ``localize.json`` and ``localize.html`` into ``directory`` (a run folder), atomically."""
    from .fileio import atomic_dir, write_json, write_text
    from .report.localize import localize_html

    with atomic_dir(directory, kind="localize", checked=checked) as tmp:
        loc.to_frame().to_csv(tmp / "localize.csv", index=False)
        write_json(tmp / "localize.json", loc.to_json())
        write_text(tmp / "localize.html", localize_html(loc))
    return Path(directory) / "localize.html"
