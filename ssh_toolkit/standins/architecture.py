"""The SSH (``sshb``) test-time architecture as an MXNet symbol, built from the spec.

See ``docs/architecture.md``: VGG16 convolutions, a stride-8 neck that adds the upsampled
stride-16 reduction, three detection modules (strides 8, 16, 32), and per stride a box-delta head and a
two-class score head followed by the test-time reshape-softmax-reshape.

Layer names follow the trained checkpoint so its ``.params`` file binds to this symbol; output names and the
group order come from the model card (``card.outputs``), or default to the spec's when no card is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

from ..errors import CardError

if TYPE_CHECKING:  # mxnet is imported lazily: importing this module must stay cheap.
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    from ..card import ModelCard

ANCHORS_PER_POSITION = 2  # A: one ratio x two scales per stride
STRIDES = (32, 16, 8)  # spec group order: cls32, bbox32, cls16, bbox16, cls8, bbox8
# (convolutions, channels) of the five VGG16 groups
VGG16_GROUPS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
NECK_CHANNELS = 128
DET_FILTERS = {8: 128, 16: 256, 32: 256}  # F of ssh_m1_det, ssh_m2_det, ssh_m3_det
DET_MODULE = {8: "ssh_m1_det", 16: "ssh_m2_det", 32: "ssh_m3_det"}


def score_name(stride: int) -> str:
    return f"rpn_cls_prob_reshape_stride{stride}"


def delta_name(stride: int) -> str:
    return f"rpn_bbox_pred_stride{stride}"


def default_outputs() -> tuple[tuple[str, str, int], ...]:
    """(name, kind, stride) of the six outputs in the spec's group order."""
    out: list[tuple[str, str, int]] = []
    for s in STRIDES:
        out += [(score_name(s), "scores", s), (delta_name(s), "deltas", s)]
    return tuple(out)


# ------------------------------------------------------------------------------------------------------------
# Layer helpers


def conv(x: "mx.sym.Symbol", name: str, filters: int, kernel: int = 3) -> "mx.sym.Symbol":
    """Convolution with bias, stride 1, 'same' padding."""
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    pad = kernel // 2
    return mx.sym.Convolution(x, num_filter=filters, kernel=(kernel, kernel), pad=(pad, pad), stride=(1, 1),
                              name=name)


def relu(x: "mx.sym.Symbol", name: str) -> "mx.sym.Symbol":
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    return mx.sym.Activation(x, act_type="relu", name=name)


def conv_relu(x: "mx.sym.Symbol", name: str, filters: int, kernel: int = 3,
              relu_name: str | None = None) -> "mx.sym.Symbol":
    return relu(conv(x, name, filters, kernel), relu_name or f"{name}_relu")


def max_pool(x: "mx.sym.Symbol", name: str) -> "mx.sym.Symbol":
    """2x2 max pooling, stride 2."""
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    return mx.sym.Pooling(x, pool_type="max", kernel=(2, 2), stride=(2, 2), name=name)


def vgg16_backbone(data: "mx.sym.Symbol") -> tuple["mx.sym.Symbol", "mx.sym.Symbol"]:
    """VGG16 convolutions; returns (relu4_3, relu5_3) at strides 8 and 16."""
    x = data
    taps: dict[int, "mx.sym.Symbol"] = {}
    for g, (n, ch) in enumerate(VGG16_GROUPS, start=1):
        for i in range(1, n + 1):
            x = conv_relu(x, f"conv{g}_{i}", ch, relu_name=f"relu{g}_{i}")
        taps[g] = x
        if g < len(VGG16_GROUPS):
            x = max_pool(x, f"pool{g}")
    return taps[4], taps[5]


def stride8_neck(relu4_3: "mx.sym.Symbol", relu5_3: "mx.sym.Symbol") -> "mx.sym.Symbol":
    """Reduce both maps to 128 channels, upsample stride 16 to 8 (depthwise deconvolution), crop, add."""
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    m1_red = conv_relu(relu4_3, "ssh_m1_red_conv", NECK_CHANNELS, kernel=1)
    m2_red = conv_relu(relu5_3, "ssh_m2_red_conv", NECK_CHANNELS, kernel=1)
    m2_up = mx.sym.Deconvolution(m2_red, num_filter=NECK_CHANNELS, num_group=NECK_CHANNELS, kernel=(4, 4),
                                 stride=(2, 2), pad=(1, 1), no_bias=True, name="ssh_m2_red_upsampling")
    m1_crop = mx.sym.Crop(m1_red, m2_up, name="ssh_m1_red_crop")
    fused = mx.sym.elemwise_add(m1_crop, m2_up, name="ssh_m1_m2_sum")
    return conv_relu(fused, "ssh_m1_conv", NECK_CHANNELS)


def detection_module(x: "mx.sym.Symbol", name: str, filters: int) -> "mx.sym.Symbol":
    """SSH detection module: a 3x3 branch (F) and the '5x5' and '7x7' context branches (F/2 each), 2F out."""
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    half = filters // 2
    direct = conv(x, f"{name}_conv1", filters)
    context = conv_relu(x, f"{name}_context_conv1", half)
    ctx5 = conv(context, f"{name}_context_conv2", half)
    ctx7 = conv(conv_relu(context, f"{name}_context_conv3_1", half), f"{name}_context_conv3_2", half)
    cat = mx.sym.concat(direct, ctx5, ctx7, dim=1, name=f"{name}_concat")
    return relu(cat, f"{name}_concat_relu")


def heads(x: "mx.sym.Symbol", stride: int, scores_name: str, deltas_name: str) -> tuple["mx.sym.Symbol", ...]:
    """(face/background probabilities [1, 2A, H, W], box deltas [1, 4A, H, W]) of one stride.

    The score head is a 2A-channel 1x1 conv; at test time it is reshaped to [1, 2, A*H, W], soft-maxed over
    the two classes (channel axis) and reshaped back, so channels 0..A-1 are background and A..2A-1 face.
    """
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    a = ANCHORS_PER_POSITION
    score = conv(x, f"rpn_cls_score_stride{stride}", 2 * a, kernel=1)
    deltas = conv(x, deltas_name, 4 * a, kernel=1)
    pairs = mx.sym.Reshape(score, shape=(0, 2, -1, 0), name=f"rpn_cls_score_reshape_stride{stride}")
    prob = mx.sym.SoftmaxActivation(pairs, mode="channel", name=f"rpn_cls_prob_stride{stride}")
    prob = mx.sym.Reshape(prob, shape=(0, 2 * a, -1, 0), name=scores_name)
    return prob, deltas


# ------------------------------------------------------------------------------------------------------------
# The network


def _card_outputs(card: "ModelCard | None") -> tuple[tuple[str, str, int], ...]:
    if card is None:
        return default_outputs()
    outs = tuple((o.name, o.kind, o.stride) for o in card.outputs)
    strides = {s for _, _, s in outs}
    if strides != set(STRIDES) or len(outs) != 2 * len(STRIDES):
        raise CardError(f"{card.path}: the SSH architecture has a scores and a deltas output at strides "
                         f"{STRIDES}; the card declares {[(n, s) for n, _, s in outs]}")
    return outs


def build_ssh_symbol(card: "ModelCard | None" = None) -> "mx.sym.Symbol":
    """The SSH test-time network: input ``data`` [1, 3, H, W] (RGB minus mean), six outputs.

    With a card, the input name, output names and group order are the card's (``card.input.name``,
    ``card.outputs``); without, the spec's: cls32, bbox32, cls16, bbox16, cls8, bbox8.
    """
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    outputs = _card_outputs(card)
    data = mx.sym.Variable(card.input.name if card is not None else "data")
    relu4_3, relu5_3 = vgg16_backbone(data)
    features = {
        8: stride8_neck(relu4_3, relu5_3),
        16: relu5_3,
        32: max_pool(relu5_3, "pool5"),
    }
    names = {(kind, s): n for n, kind, s in outputs}
    made: dict[str, "mx.sym.Symbol"] = {}
    for s in STRIDES:
        det = detection_module(features[s], DET_MODULE[s], DET_FILTERS[s])
        prob, deltas = heads(det, s, names[("scores", s)], names[("deltas", s)])
        made[names[("scores", s)]], made[names[("deltas", s)]] = prob, deltas
    return mx.sym.Group([made[n] for n, _, _ in outputs])


# ------------------------------------------------------------------------------------------------------------
# Parameter counting


def parameter_shapes(symbol: "mx.sym.Symbol", input_shape: tuple[int, ...] = (1, 3, 640, 640),
                     input_name: str = "data") -> dict[str, tuple[int, ...]]:
    """Shapes of the learnable arguments (everything but the input), in ``list_arguments()`` order."""
    arg_shapes, _, _ = symbol.infer_shape(**{input_name: input_shape})
    return {n: tuple(s) for n, s in zip(symbol.list_arguments(), arg_shapes) if n != input_name}


def count_parameters(shapes: Mapping[str, Iterable[int]] | Iterable[Iterable[int]]) -> int:
    """Total number of weights and biases in a ``{name: shape}`` mapping or a list of shapes."""
    items = shapes.values() if isinstance(shapes, Mapping) else shapes
    total = 0
    for shape in items:
        n = 1
        for d in shape:
            n *= int(d)
        total += n
    return total


def count_by_part(shapes: Mapping[str, Iterable[int]]) -> dict[str, int]:
    """Parameter counts grouped as in the spec's size check (backbone, neck, modules, heads)."""
    parts = {"vgg16": 0, "reductions": 0, "upsampling": 0, "ssh_m1_conv": 0,
             "ssh_m1_det": 0, "ssh_m2_det": 0, "ssh_m3_det": 0, "heads": 0}
    for name, shape in shapes.items():
        if name.startswith("conv"):
            part = "vgg16"
        elif name.startswith(("ssh_m1_red_conv", "ssh_m2_red_conv")):
            part = "reductions"
        elif name.startswith("ssh_m2_red_upsampling"):
            part = "upsampling"
        elif name.startswith("rpn_"):
            part = "heads"
        else:
            part = next((p for p in parts if name.startswith(p + "_")), None)
            if part is None:
                raise ValueError(f"parameter {name!r} belongs to no known part of the SSH architecture")
        parts[part] += count_parameters([shape])
    return parts
