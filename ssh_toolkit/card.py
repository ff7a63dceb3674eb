"""The model card: everything model-specific, loaded from ``ssh_toolkit/pipelines/<model>.yaml`` (package data) or a file of the user's and validated.

Nothing else in the toolkit hard-codes a model constant; it takes a :class:`ModelCard`.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .errors import CardError, UsageError

# The embedded cards are package data, so an installed wheel finds them from any folder.
PIPELINES_DIR = Path(str(resources.files("ssh_toolkit") / "pipelines"))
DEFAULT_CARD = PIPELINES_DIR / "ssh-mxnet.yaml"
PRECISIONS = ("FP32", "FP16")
OUTPUT_KINDS = ("scores", "deltas")
EXEC_SUFFIXES = ("bf16", "f16")  # execution precisions other than pinned f32 that get their own card entries
# The precision of the IR ``ssh-toolkit quantize`` makes from the FP32 IR (card section ``quantize``). It is gated on
# its mAP drop and box match rate only: its numeric differences are reported, never judged against a tolerance.
QUANTIZED = "INT8"


@dataclass(frozen=True)
class CheckpointSpec:
    archive: str
    size: int
    sha256: str
    urls: tuple[str, ...]
    mirrors: tuple[str, ...]
    prefix: str
    epoch: int

    @property
    def symbol_file(self) -> str:
        return f"{self.prefix}-symbol.json"

    @property
    def params_file(self) -> str:
        # Model Optimizer finds the symbol file from this naming convention.
        return f"{self.prefix}-{self.epoch:04d}.params"

    @property
    def sources(self) -> tuple[str, ...]:
        return self.urls + self.mirrors


@dataclass(frozen=True)
class InputSpec:
    name: str
    size: int
    layout: str

    def shape(self, size: int | None = None) -> tuple[int, int, int, int]:
        s = size or self.size
        return (1, 3, s, s)


@dataclass(frozen=True)
class SidePreprocess:
    """What one backend expects after the shared uint8 BGR resize."""

    channel_order: str  # "RGB" or "BGR"
    mean: tuple[float, float, float]  # in the channel order above


@dataclass(frozen=True)
class OutputSpec:
    name: str
    kind: str  # "scores" or "deltas"
    stride: int


@dataclass(frozen=True)
class AnchorSpec:
    base_size: int
    ratios: tuple[float, ...]
    scales: Mapping[int, tuple[float, ...]]  # stride -> scales, in the order anchors are laid out

    @property
    def per_position(self) -> int:
        counts = {len(s) * len(self.ratios) for s in self.scales.values()}
        return counts.pop()


@dataclass(frozen=True)
class Protocol:
    """Parameters of the Open Model Zoo Accuracy Checker protocol (spec §3-§5)."""

    name: str
    strides: tuple[int, ...]  # decoding/concatenation order (the Accuracy Checker's 32, 16, 8)
    keep_top_k: int
    nms_threshold: float
    include_boundaries: bool
    round_policy: str
    clip_annotation: float
    height_range: tuple[float, float]
    filter_empty: bool
    overlap_threshold: float
    ignore_difficult: bool

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_cosine: float


# What the numeric parity of a precision without tolerances (INT8) is judged under: nothing but a data problem (shape,
# non-finite values) fails it.
REPORTED_ONLY = Tolerance(atol=math.inf, rtol=0.0, min_cosine=-1.0)


@dataclass(frozen=True)
class QuantizeSpec:
    """Defaults of ``ssh-toolkit quantize`` (NNCF post-training INT8 with accuracy control)."""

    max_drop: float  # mAP points the INT8 IR may lose against the FP32 IR on the validation images
    calibration_images: int  # images drawn (seeded) from the calibration data; fewer present: all of them
    subset_size: int  # validation images (the first N of the evaluation data); 0: all
    seed: int  # draws the calibration images


@dataclass(frozen=True)
class BoxMatchSpec:
    min_score: float
    iou: float


@dataclass(frozen=True)
class Gates:
    map_vs_baseline_atol: float
    map_vs_reference_atol: float
    ir_vs_mxnet_drop: Mapping[str, float]
    min_box_match_rate: Mapping[str, float]


@dataclass(frozen=True)
class LocalizeSpec:
    """``ssh-toolkit localize``: per card precision (FP32, FP32@bf16, ...), the scaled max abs difference above
    which a layer is flagged; how many MB of intermediate tensors one forward pass may hold; how far MXNet's
    internals run may move the final outputs before it is refused."""

    threshold: Mapping[str, float]
    batch_mb: int
    internals_atol: float


@dataclass(frozen=True)
class ModelCard:
    path: Path
    name: str
    title: str
    reference_map: float
    reference_dataset: str
    reference_n_images: int
    reference_params: int
    reference_gflops: float
    checkpoint: CheckpointSpec
    input: InputSpec
    resize_interpolation: str
    preprocess: Mapping[str, SidePreprocess]  # "mxnet", "ir"
    precisions: tuple[str, ...]
    mo_args: tuple[str, ...]
    outputs: tuple[OutputSpec, ...]
    anchors: AnchorSpec
    protocol: Protocol
    tolerances: Mapping[str, Mapping[str, Tolerance]] = field(repr=False)
    box_match: BoxMatchSpec = field(repr=False)
    gates: Gates = field(repr=False)
    localize: LocalizeSpec | None = field(default=None, repr=False)  # optional section: cards without it still load
    quantize: QuantizeSpec | None = field(default=None, repr=False)  # None: the card has no quantize section

    @property
    def strides(self) -> tuple[int, ...]:
        """Strides in the order the decoder concatenates them: the protocol's, not the outputs' listing order."""
        return self.protocol.strides

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.outputs)

    @property
    def largest_stride(self) -> int:
        return max(o.stride for o in self.outputs)

    def resolve_input_size(self, requested: int | None = None) -> int:
        """The square input size to use: ``requested`` or the card's; a positive multiple of the largest stride.

        Every command (convert, compare, evaluate, run) resolves its ``--input-size`` here, so they agree.
        """
        size = self.input.size if requested is None else requested
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0 or size % self.largest_stride:
            raise UsageError(f"--input-size {requested}: must be a positive multiple of {self.largest_stride}, the "
                             f"largest output stride of {self.name} ({self.path})")
        return size

    def parity_reported_only(self, precision: str) -> bool:
        """True for the quantized IR (``INT8``, ``INT8@bf16``): numeric differences reported, not judged."""
        return self.quantize is not None and precision.split("@")[0] == QUANTIZED

    def output(self, kind: str, stride: int) -> OutputSpec:
        for o in self.outputs:
            if o.kind == kind and o.stride == stride:
                return o
        raise CardError(f"{self.path}: no output of kind {kind!r} at stride {stride}")

    def tolerance(self, precision: str, output_name: str) -> Tolerance:
        """Tolerance for one output: by name, then by kind, then the precision's default (INT8: REPORTED_ONLY)."""
        if self.parity_reported_only(precision):
            return REPORTED_ONLY
        table = self.tolerances.get(precision)
        if table is None:
            raise CardError(f"{self.path}: 'tolerances' has no entry for precision {precision!r}")
        kind = next((o.kind for o in self.outputs if o.name == output_name), None)
        for key in (output_name, kind, "default"):
            if key in table:
                return table[key]
        raise CardError(f"{self.path}: 'tolerances.{precision}' covers neither {output_name!r} nor a default")


# --------------------------------------------------------------------------------------------------------------
# Validation: a tiny typed reader so every error names the file, the key and what is wrong. Numbers must be
# finite; thresholds lie strictly between 0 and 1 (min_cosine and min_box_match_rate may be 1); sizes, strides
# and counts are positive; a key the card does not know is an error naming its path and the closest known key,
# so a typo never falls back to a default.


class _Reader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, key: str, what: str) -> CardError:
        return CardError(f"{self.path}: key '{key}': {what}")

    def get(self, node: Mapping[str, Any], key: str, prefix: str = "") -> Any:
        full = f"{prefix}{key}"
        if not isinstance(node, Mapping):
            raise self.fail(prefix.rstrip("."), f"expected a mapping, got {type(node).__name__}")
        if key not in node:
            raise self.fail(full, "missing")
        return node[key]

    def str_(self, node: Mapping[str, Any], key: str, prefix: str = "") -> str:
        v = self.get(node, key, prefix)
        if not isinstance(v, str) or not v:
            raise self.fail(f"{prefix}{key}", f"expected a non-empty string, got {v!r}")
        return v

    def file_name(self, node: Mapping[str, Any], key: str, prefix: str = "") -> str:
        """A value that becomes part of a file name (checkpoint files, baselines): one plain name, never a path."""
        v = self.str_(node, key, prefix)
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._+-]*", v):
            raise self.fail(f"{prefix}{key}", f"expected a plain file name (letters, digits, '.', '_', '+', '-'; "
                                              f"no folder, not starting with '.'), got {v!r}")
        return v

    def num(self, node: Mapping[str, Any], key: str, prefix: str = "", *, integer: bool = False,
            minimum: float | None = None, above: float | None = None, maximum: float | None = None,
            below: float | None = None) -> Any:
        """A finite number; ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones."""
        v = self.get(node, key, prefix)
        full = f"{prefix}{key}"
        ok = isinstance(v, int) if integer else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok:
            raise self.fail(full, f"expected {'an integer' if integer else 'a number'}, got {v!r}")
        if not math.isfinite(v):
            raise self.fail(full, f"expected a finite number, got {v!r}")
        if (minimum is not None and v < minimum) or (above is not None and v <= above) \
                or (maximum is not None and v > maximum) or (below is not None and v >= below):
            low = f"[{minimum}" if minimum is not None else f"({above}" if above is not None else "(-inf"
            high = f"{maximum}]" if maximum is not None else f"{below})" if below is not None else "inf)"
            raise self.fail(full, f"must be in {low}, {high}, got {v!r}")
        return v

    def fraction(self, node: Mapping[str, Any], key: str, prefix: str = "", *, one: bool = False) -> float:
        """A threshold strictly between 0 and 1 (``one``: 1 allowed too)."""
        if one:
            return float(self.num(node, key, prefix, above=0, maximum=1))
        return float(self.num(node, key, prefix, above=0, below=1))

    def only(self, node: Any, prefix: str, allowed: Iterable[str]) -> None:
        """CardError for the first key of ``node`` not in ``allowed``: a typo must never fall back to a default."""
        if not isinstance(node, Mapping):
            return  # the typed getters report the wrong type
        allowed = [str(a) for a in allowed]
        for key in node:
            if str(key) not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]}?" if close else f"expected one of {', '.join(allowed)}"
                raise self.fail(f"{prefix}{key}", f"unknown key; {hint}")

    def bool_(self, node: Mapping[str, Any], key: str, prefix: str = "") -> bool:
        v = self.get(node, key, prefix)
        if not isinstance(v, bool):
            raise self.fail(f"{prefix}{key}", f"expected true or false, got {v!r}")
        return v

    def list_(self, node: Mapping[str, Any], key: str, prefix: str = "", *, item: type | tuple = str,
              length: int | None = None, allow_empty: bool = False) -> tuple:
        v = self.get(node, key, prefix)
        if not isinstance(v, list):
            raise self.fail(f"{prefix}{key}", f"expected a list, got {v!r}")
        if not v and not allow_empty:
            raise self.fail(f"{prefix}{key}", "must not be empty")
        if length is not None and len(v) != length:
            raise self.fail(f"{prefix}{key}", f"expected {length} items, got {len(v)}")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, item):
                raise self.fail(f"{prefix}{key}", f"item {x!r} has the wrong type")
            if isinstance(x, float) and not math.isfinite(x):
                raise self.fail(f"{prefix}{key}", f"expected finite numbers, got {x!r}")
        return tuple(v)

    def positives(self, node: Mapping[str, Any], key: str, prefix: str = "", **kw: Any) -> tuple:
        values = self.list_(node, key, prefix, item=(int, float), **kw)
        for x in values:
            if x <= 0:
                raise self.fail(f"{prefix}{key}", f"expected numbers > 0, got {x!r}")
        return values


# Keys each mapping of the card may hold (None: keys are data, checked where they are read).
_SCHEMA: dict[str, Any] = {
    "": ("name", "title", "reference", "checkpoint", "input", "preprocess", "convert", "outputs", "anchors",
         "protocol", "tolerances", "box_match", "gates", "quantize", "localize"),
    "reference.": ("map_percent", "dataset", "n_images", "params", "gflops"),
    "checkpoint.": ("archive", "size", "sha256", "urls", "mirrors", "prefix", "epoch"),
    "input.": ("name", "size", "layout"),
    "preprocess.": ("resize", "mxnet", "ir"),
    "preprocess.resize.": ("interpolation", "keep_aspect_ratio"),
    "preprocess.mxnet.": ("channel_order", "mean"),
    "preprocess.ir.": ("channel_order", "mean"),
    "convert.": ("precisions", "model_optimizer_args"),
    "outputs[]": ("name", "kind", "stride"),
    "anchors.": ("base_size", "ratios", "scales"),
    "protocol.": ("name", "strides", "keep_top_k", "nms_threshold", "include_boundaries", "round_policy",
                  "clip_annotation", "height_range", "filter_empty", "overlap_threshold", "ignore_difficult"),
    "tolerance": ("atol", "rtol", "min_cosine"),
    "box_match.": ("min_score", "iou"),
    "gates.": ("map_vs_baseline", "map_vs_reference", "ir_vs_mxnet_drop", "min_box_match_rate"),
    "gates.map_vs_baseline.": ("atol",),
    "gates.map_vs_reference.": ("atol",),
    "localize.": ("threshold", "batch_mb", "internals_atol"),
    "quantize.": ("max_drop", "calibration_images", "subset_size", "seed"),
}


def _check_keys(r: _Reader, data: Mapping[str, Any]) -> None:
    """Unknown keys at any level are errors naming the key path (tolerance tables: in :func:`load_card`)."""
    for prefix, allowed in _SCHEMA.items():
        if prefix in ("outputs[]", "tolerance"):
            continue
        node: Any = data
        for part in prefix.rstrip(".").split(".") if prefix else ():
            node = node.get(part) if isinstance(node, Mapping) else None
        r.only(node, prefix, allowed)
    outputs = data.get("outputs")
    if isinstance(outputs, list):
        for i, o in enumerate(outputs):
            r.only(o, f"outputs[{i}].", _SCHEMA["outputs[]"])


def _tolerance(r: _Reader, node: Any, prefix: str) -> Tolerance:
    r.only(node, prefix, _SCHEMA["tolerance"])
    t = Tolerance(
        atol=float(r.num(node, "atol", prefix, minimum=0)),
        rtol=float(r.num(node, "rtol", prefix, minimum=0)),
        min_cosine=r.fraction(node, "min_cosine", prefix, one=True),
    )
    return t


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a mapping holding the same key twice (PyYAML silently keeps the last one)."""

    def __init__(self, stream: str, path: Path) -> None:
        super().__init__(stream)
        self.card_path = path

    def get_single_data(self) -> Any:
        node = self.get_single_node()
        if node is None:
            return None
        self._refuse_duplicates(node, "")
        return self.construct_document(node)

    def _refuse_duplicates(self, node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
                line = key_node.start_mark.line + 1
                if key is not None and key in seen:
                    raise CardError(f"{self.card_path}: key '{prefix}{key}': duplicate key at line {line} (first "
                                    f"at line {seen[key]})")
                if key is not None:
                    seen[key] = line
                self._refuse_duplicates(value_node, f"{prefix}{key}." if key is not None else prefix)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._refuse_duplicates(item, f"{prefix.rstrip('.')}[{i}].")


def _load_yaml(path: Path, text: str) -> Any:
    loader = _UniqueKeyLoader(text, path)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_card(path: str | Path = DEFAULT_CARD) -> ModelCard:
    """Read and validate a pipeline file. Raises CardError naming the file and the key."""
    path = Path(path)
    try:
        data = _load_yaml(path, path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise CardError(f"{path}: pipeline file not found") from None
    except IsADirectoryError:
        raise CardError(f"{path}: is a directory, expected a YAML pipeline file") from None
    except UnicodeDecodeError as e:
        raise CardError(f"{path}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); expected a "
                        f"YAML pipeline file") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CardError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise CardError(f"{path}: expected a mapping at the top level")
    r = _Reader(path)
    if "detection_parity" in data and "box_match" not in data:
        raise r.fail("detection_parity", "renamed to box_match (same min_score and iou)")
    _check_keys(r, data)

    ref = r.get(data, "reference")
    ck = r.get(data, "checkpoint")
    sha = r.str_(ck, "sha256", "checkpoint.")
    if not re.fullmatch(r"[0-9a-f]{64}", sha):
        raise r.fail("checkpoint.sha256", f"expected 64 lowercase hex characters, got {sha!r}")
    checkpoint = CheckpointSpec(
        archive=r.file_name(ck, "archive", "checkpoint."),
        size=r.num(ck, "size", "checkpoint.", integer=True, minimum=1),
        sha256=sha,
        urls=r.list_(ck, "urls", "checkpoint.", allow_empty=True),
        mirrors=r.list_(ck, "mirrors", "checkpoint.", allow_empty=True),
        prefix=r.file_name(ck, "prefix", "checkpoint."),
        epoch=r.num(ck, "epoch", "checkpoint.", integer=True, minimum=0),
    )

    inp = r.get(data, "input")
    layout = r.str_(inp, "layout", "input.")
    if layout != "NCHW":
        raise r.fail("input.layout", f"only NCHW is supported, got {layout!r}")
    input_spec = InputSpec(
        name=r.str_(inp, "name", "input."),
        size=r.num(inp, "size", "input.", integer=True, minimum=32),
        layout=layout,
    )

    pre = r.get(data, "preprocess")
    resize = r.get(pre, "resize", "preprocess.")
    interp = r.str_(resize, "interpolation", "preprocess.resize.")
    if interp != "linear":
        raise r.fail("preprocess.resize.interpolation", f"only 'linear' is implemented, got {interp!r}")
    if r.bool_(resize, "keep_aspect_ratio", "preprocess.resize."):
        raise r.fail("preprocess.resize.keep_aspect_ratio", "only false (stretch) is implemented")
    sides = {}
    for side in ("mxnet", "ir"):
        node = r.get(pre, side, "preprocess.")
        order = r.str_(node, "channel_order", f"preprocess.{side}.")
        if order not in ("RGB", "BGR"):
            raise r.fail(f"preprocess.{side}.channel_order", f"expected RGB or BGR, got {order!r}")
        mean = r.list_(node, "mean", f"preprocess.{side}.", item=(int, float), length=3)
        sides[side] = SidePreprocess(order, tuple(float(m) for m in mean))

    conv = r.get(data, "convert")
    precisions = r.list_(conv, "precisions", "convert.")
    for p in precisions:
        if p not in PRECISIONS:
            raise r.fail("convert.precisions", f"unknown precision {p!r}; expected one of {PRECISIONS}")
    mo_args = r.list_(conv, "model_optimizer_args", "convert.", allow_empty=True)
    for a in mo_args:
        if a.startswith(("--input_shape", "--compress_to_fp16", "--output_dir", "--input_model")):
            raise r.fail("convert.model_optimizer_args", f"{a.split('=')[0]} is set by the toolkit, remove it")

    outs = []
    for i, o in enumerate(r.list_(data, "outputs", item=dict)):
        p = f"outputs[{i}]."
        kind = r.str_(o, "kind", p)
        if kind not in OUTPUT_KINDS:
            raise r.fail(f"{p}kind", f"expected one of {OUTPUT_KINDS}, got {kind!r}")
        outs.append(OutputSpec(r.str_(o, "name", p), kind, r.num(o, "stride", p, integer=True, minimum=1)))
    names = [o.name for o in outs]
    if len(set(names)) != len(names):
        raise r.fail("outputs", "output names must be unique")
    largest_stride = max(o.stride for o in outs)
    if input_spec.size % largest_stride:
        raise r.fail("input.size", f"must be a multiple of {largest_stride} (the largest output stride), got "
                                   f"{input_spec.size}")

    an = r.get(data, "anchors")
    scales_node = r.get(an, "scales", "anchors.")
    if not isinstance(scales_node, dict):
        raise r.fail("anchors.scales", "expected a mapping stride -> list of scales")
    scales = {}
    for stride in scales_node:
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise r.fail(f"anchors.scales.{stride}", "expected a stride (a positive integer) as key")
        scales[stride] = r.positives(scales_node, stride, "anchors.scales.")
    anchors = AnchorSpec(
        base_size=r.num(an, "base_size", "anchors.", integer=True, minimum=1),
        ratios=tuple(float(x) for x in r.positives(an, "ratios", "anchors.")),
        scales=scales,
    )
    if len({len(s) for s in scales.values()}) != 1:
        raise r.fail("anchors.scales", "every stride needs the same number of scales")
    for o in outs:
        if o.stride not in scales:
            raise r.fail("anchors.scales", f"no anchors for stride {o.stride} (output {o.name})")
    for s in scales:
        for kind in OUTPUT_KINDS:
            if not any(o.stride == s and o.kind == kind for o in outs):
                raise r.fail("outputs", f"stride {s} has no output of kind {kind!r}")

    pr = r.get(data, "protocol")
    hr = r.list_(pr, "height_range", "protocol.", item=(int, float), length=2)
    if not 0 <= hr[0] < hr[1]:
        raise r.fail("protocol.height_range", f"expected [low, high] with 0 <= low < high, got {list(hr)}")
    rp = r.str_(pr, "round_policy", "protocol.")
    if rp != "nearest":
        raise r.fail("protocol.round_policy", f"only 'nearest' (np.rint) is implemented, got {rp!r}")
    strides = tuple(r.list_(pr, "strides", "protocol.", item=int))
    if sorted(strides) != sorted({o.stride for o in outs}):
        raise r.fail("protocol.strides", f"must list each output stride once, got {list(strides)} for outputs at "
                                         f"strides {sorted({o.stride for o in outs})}")
    protocol = Protocol(
        name=r.str_(pr, "name", "protocol."),
        strides=strides,
        keep_top_k=r.num(pr, "keep_top_k", "protocol.", integer=True, minimum=1),
        nms_threshold=r.fraction(pr, "nms_threshold", "protocol."),
        include_boundaries=r.bool_(pr, "include_boundaries", "protocol."),
        round_policy=rp,
        clip_annotation=float(r.num(pr, "clip_annotation", "protocol.", minimum=1)),
        height_range=(float(hr[0]), float(hr[1])),
        filter_empty=r.bool_(pr, "filter_empty", "protocol."),
        overlap_threshold=r.fraction(pr, "overlap_threshold", "protocol."),
        ignore_difficult=r.bool_(pr, "ignore_difficult", "protocol."),
    )

    tol_node = r.get(data, "tolerances")
    # Besides each IR precision (run at pinned f32), an IR run at another execution precision has its own
    # tolerances and limits under "<precision>@<exec>" (FP32@bf16: the FP32 IR as a bf16 CPU runs it by default).
    executed = tuple(k for k in (tol_node if isinstance(tol_node, dict) else {})
                     if isinstance(k, str) and "@" in k and k.split("@")[0] in precisions
                     and k.split("@")[1] in EXEC_SUFFIXES)
    r.only(tol_node, "tolerances.", (*precisions, *executed))
    tolerances: dict[str, dict[str, Tolerance]] = {}
    for prec in (*precisions, *executed):
        table = r.get(tol_node, prec, "tolerances.")
        if not isinstance(table, dict) or not table:
            raise r.fail(f"tolerances.{prec}", "expected a mapping of output name/kind/default -> tolerance")
        for key in table:
            if key != "default" and key not in OUTPUT_KINDS and key not in names:
                raise r.fail(f"tolerances.{prec}.{key}", "is neither 'default', an output kind nor an output name")
        tolerances[prec] = {k: _tolerance(r, v, f"tolerances.{prec}.{k}.") for k, v in table.items()}
        for o in outs:
            if not ({o.name, o.kind, "default"} & set(table)):
                raise r.fail(f"tolerances.{prec}", f"no tolerance covers output {o.name!r}")

    bm = r.get(data, "box_match")
    box_match = BoxMatchSpec(
        min_score=r.fraction(bm, "min_score", "box_match."),
        iou=r.fraction(bm, "iou", "box_match."),
    )

    g = r.get(data, "gates")
    quantize = None
    quantized: tuple[str, ...] = ()
    if "quantize" in data:
        q = r.get(data, "quantize")
        quantize = QuantizeSpec(
            max_drop=float(r.num(q, "max_drop", "quantize.", minimum=0)),
            calibration_images=r.num(q, "calibration_images", "quantize.", integer=True, minimum=1),
            subset_size=r.num(q, "subset_size", "quantize.", integer=True, minimum=0),
            seed=r.num(q, "seed", "quantize.", integer=True, minimum=0),
        )
        # The INT8 IR's limits: INT8 (pinned f32) and, like the others, INT8@<exec> where the gates list one.
        drop_node = g.get("ir_vs_mxnet_drop") if isinstance(g, Mapping) else None
        quantized = (QUANTIZED, *(k for k in (drop_node if isinstance(drop_node, Mapping) else {})
                                  if isinstance(k, str) and "@" in k and k.split("@")[0] == QUANTIZED
                                  and k.split("@")[1] in EXEC_SUFFIXES))

    def per_precision(key: str, **bounds: Any) -> dict[str, float]:
        node = r.get(g, key, "gates.")
        r.only(node, f"gates.{key}.", (*precisions, *executed, *quantized))
        return {p: float(r.num(node, p, f"gates.{key}.", **bounds)) for p in (*precisions, *executed, *quantized)}

    gates = Gates(
        map_vs_baseline_atol=float(r.num(r.get(g, "map_vs_baseline", "gates."), "atol", "gates.map_vs_baseline.",
                                         minimum=0)),
        map_vs_reference_atol=float(r.num(r.get(g, "map_vs_reference", "gates."), "atol",
                                          "gates.map_vs_reference.", minimum=0)),
        ir_vs_mxnet_drop=per_precision("ir_vs_mxnet_drop", minimum=0),
        min_box_match_rate=per_precision("min_box_match_rate", above=0, maximum=1),
    )

    localize = None
    if isinstance(data, Mapping) and "localize" in data:
        lo = r.get(data, "localize")
        thresholds = r.get(lo, "threshold", "localize.")
        r.only(thresholds, "localize.threshold.", (*precisions, *executed))
        localize = LocalizeSpec(
            threshold={p: float(r.num(thresholds, p, "localize.threshold.", above=0))
                       for p in (*precisions, *executed)},
            batch_mb=r.num(lo, "batch_mb", "localize.", integer=True, minimum=1),
            internals_atol=float(r.num(lo, "internals_atol", "localize.", minimum=0)),
        )

    return ModelCard(
        path=path,
        name=r.file_name(data, "name"),
        title=r.str_(data, "title"),
        reference_map=float(r.num(ref, "map_percent", "reference.", above=0, maximum=100)),
        reference_dataset=r.str_(ref, "dataset", "reference."),
        reference_n_images=r.num(ref, "n_images", "reference.", integer=True, minimum=1),
        reference_params=r.num(ref, "params", "reference.", integer=True, minimum=1),
        reference_gflops=float(r.num(ref, "gflops", "reference.", above=0)),
        checkpoint=checkpoint,
        input=input_spec,
        resize_interpolation=interp,
        preprocess=sides,
        precisions=precisions,
        mo_args=mo_args,
        outputs=tuple(outs),
        anchors=anchors,
        protocol=protocol,
        tolerances=tolerances,
        box_match=box_match,
        gates=gates,
        localize=localize,
        quantize=quantize,
    )
