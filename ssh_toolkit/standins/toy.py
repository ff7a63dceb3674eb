"""A toy face detector with the SSH input/output contract: a checkpoint that runs in milliseconds.

It finds the faces of the generated sample dataset (:mod:`ssh_toolkit.sample`: bright filled ellipses on a
darker textured background) with fixed, hand-set weights; nothing is trained and nothing is random. Its logic
lives in the graph and the ``.params`` file (no Python at inference time), built only from ops that Model
Optimizer's MXNet front end converts: Convolution, Pooling, clip, slice_axis, elemwise_div, Reshape and
SoftmaxActivation. Input and outputs are the real model's: ``data`` [1, 3, S, S] RGB minus the mean, and the
outputs named and ordered as in ``card.outputs``.

1. ``toy_gray`` (1x1 conv) + ``clip``: a soft "bright" mask in [0, 1], the luminance of the un-meaned input
   ramping from 0 at :data:`MASK_LOW` to 1 at :data:`MASK_HIGH`; 2x2 average pooling makes 2, 4, 8 px cells.
2. ``toy_window_strideS``: per stride S, one convolution (stride 4) of the mask at S/4 px cells whose kernel
   covers the ``2a`` window around the anchor centre ``(w*S + 7.5, h*S + 7.5)`` of the largest anchor (a =
   anchor side). Window edges fall on cell edges, so every window sum is exact. For S=8 symmetric padding
   cannot centre a window at 7.5, so the first output row and column are sliced off.
3. Scores: background logit 0; face logit ``GAIN * (inner - RING_WEIGHT * ring - THRESHOLD)``, ``inner`` =
   bright fraction of the anchor square, ``ring`` = bright fraction of the ring between it and the ``2a``
   square. That peaks where the anchor matches a blob in place and size. Then the real net's test-time
   reshape [1,4,H,W] -> [1,2,2H,W], channel softmax and reshape back -> face probability.
4. Deltas: ``dx, dy`` = centroid of the bright mass in the :data:`MOMENT_WINDOW` * a square, relative to the
   anchor centre, in anchor sides (first moment / mass, one ``elemwise_div``); ``dw = dh = 0``. A small prior
   mass at the anchor centre (:data:`PRIOR_MASS`) keeps empty windows at 0. The toy does not estimate sizes:
   a face between two anchor sizes (they are 2x apart) is its typical miss, which keeps the sample's mAP far
   from 100 (57 % at 640 on the default sample; 54-78 % over sample seeds 0-4 and input sizes 128..640).

The checkpoint works at any square input size that is a multiple of the largest stride (32).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..card import ModelCard
from ..errors import CardError
from ..model.anchors import base_anchors_by_stride
from ..workspace import Checkpoint
from .mxnet_checkpoint import save_checkpoint

if TYPE_CHECKING:  # mxnet is imported lazily: importing this module must stay cheap.
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

TOY_KIND = "toy"

LUMA_RGB = (0.299, 0.587, 0.114)  # luminance weights of R, G, B (ITU-R BT.601)
MASK_LOW = 120.0  # luminance where the mask is 0 (sample background: 40..90; eyes and mouth: 110)
MASK_HIGH = 170.0  # luminance where the mask is 1 (sample faces: 200..230)
CELLS_PER_STRIDE = 4  # the mask is pooled to cells of S/4 px; the window convolutions then have stride 4
GAIN = 8.0  # face logit per unit of contrast
THRESHOLD = 0.4  # contrast at face probability 0.5 (a blob filling its anchor's inscribed ellipse: 0.785)
RING_WEIGHT = 2.0  # a bright ring around the anchor counts against it (the blob is larger than the anchor)
MOMENT_WINDOW = 1.5  # side of the centroid window, in anchor sides
PRIOR_MASS = 0.01  # mass (fraction of the anchor square) at the anchor centre: empty windows give dx = dy = 0
CHANNEL_MULTIPLE = 16  # MKL-DNN runs these large-kernel convolutions 10-100x faster with 16k output channels


@dataclass(frozen=True)
class StrideGeometry:
    """How one stride's window convolution lines up with its anchors.

    The convolution (kernel ``kernel`` cells, stride ``conv_stride``, symmetric padding ``pad``) runs on the
    mask pooled to ``cell`` px cells; its output ``w + skip`` is the window of anchor column ``w``.
    """

    stride: int
    cell: int
    anchor_sides: tuple[int, ...]  # in the card's anchor order (k = 0, 1, ...)
    kernel: int
    pad: int
    conv_stride: int
    skip: int

    def offsets(self) -> np.ndarray:
        """(kernel,) distance of each kernel cell's centre from the anchor centre, in pixels."""
        j = np.arange(self.kernel, dtype=np.float64)
        return self.cell * (j + 0.5 - self.kernel / 2.0)


def stride_geometry(card: ModelCard, stride: int) -> StrideGeometry:
    """Geometry of ``stride``'s window convolution, from the card's anchors (square, sharing one centre)."""
    base = base_anchors_by_stride(card.anchors)[stride]
    sides = base[:, 2] - base[:, 0] + 1
    if np.any(base[:, 3] - base[:, 1] + 1 != sides):
        raise CardError(f"{card.path}: the toy detector needs square anchors (ratio 1) at stride {stride}")
    centres = base[:, 0] + 0.5 * (sides - 1)
    if np.any(centres != centres[0]) or np.any(base[:, 1] != base[:, 0]):
        raise CardError(f"{card.path}: the toy detector needs stride {stride}'s anchors to share a centre")
    if stride % CELLS_PER_STRIDE:
        raise CardError(f"{card.path}: the toy detector needs strides divisible by {CELLS_PER_STRIDE}, "
                        f"got {stride}")
    cell, r = stride // CELLS_PER_STRIDE, CELLS_PER_STRIDE
    side = int(sides.max())
    # The kernel is the 2a window of the largest anchor; for column w it starts at pixel w*S + c + 0.5 - a.
    start = centres[0] + 0.5 - side
    if start % cell or np.any(sides % (2 * cell)):
        raise CardError(f"{card.path}: the anchor windows of stride {stride} do not fall on {cell}-px cells")
    kernel = 2 * side // cell
    o = int(start // cell)  # window of column w starts at cell r*w + o
    # The smallest pad >= -o with (pad + o) % r == 0 whose outputs, after dropping the first `skip`, number
    # exactly n/r for every map size n divisible by r: n/r + floor((2*pad - kernel)/r) + 1 - skip.
    pad = -o
    while (2 * pad - kernel) // r + 1 - (pad + o) // r < 0:
        pad += r
    skip = (pad + o) // r
    if (2 * pad - kernel) // r + 1 - skip != 0:  # unreachable: each step above adds exactly one output
        raise CardError(f"{card.path}: stride {stride}: no exact window alignment")
    return StrideGeometry(stride, cell, tuple(int(s) for s in sides), kernel, pad, r, skip)


def _window_channels(n_anchor: int) -> dict[str, tuple[int, int]]:
    """Channel ranges of the window convolution: face/background scores, mass, first moments, padding."""
    sizes = (("score", 2 * n_anchor), ("mass", 2 * n_anchor), ("first", 2 * n_anchor))
    out, begin = {}, 0
    for key, size in sizes:
        out[key] = (begin, begin + size)
        begin += size
    out["all"] = (0, -(-begin // CHANNEL_MULTIPLE) * CHANNEL_MULTIPLE)
    return out


# ------------------------------------------------------------------------------------------------------------
# Symbol


def build_toy_symbol(card: ModelCard) -> "mx.sym.Symbol":
    """The toy detector's graph: input ``card.input.name``, the card's outputs in the card's group order."""
    from ..runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    n_anchor = card.anchors.per_position
    data = mx.sym.Variable(card.input.name)
    gray = mx.sym.Convolution(data, num_filter=1, kernel=(1, 1), name="toy_gray")
    masks = {1: mx.sym.clip(gray, a_min=0.0, a_max=1.0, name="toy_mask")}
    geoms = {s: stride_geometry(card, s) for s in card.strides}
    for cell in sorted({g.cell for g in geoms.values()}):
        if cell not in masks:
            src = max(c for c in masks if cell % c == 0)
            f = cell // src
            masks[cell] = mx.sym.Pooling(masks[src], kernel=(f, f), stride=(f, f), pool_type="avg",
                                         name=f"toy_mask_pool{cell}")

    parts = _window_channels(n_anchor)
    heads: dict[tuple[str, int], mx.sym.Symbol] = {}
    for s, g in geoms.items():
        name = f"toy_window_stride{s}"
        win = mx.sym.Convolution(masks[g.cell], num_filter=parts["all"][1], kernel=(g.kernel, g.kernel),
                                 stride=(g.conv_stride, g.conv_stride), pad=(g.pad, g.pad), name=name)
        if g.skip:
            win = mx.sym.slice_axis(win, axis=2, begin=g.skip, end=None, name=f"{name}_crop_h")
            win = mx.sym.slice_axis(win, axis=3, begin=g.skip, end=None, name=f"{name}_crop_w")

        def part(key: str, part_name: str, win: "mx.sym.Symbol" = win) -> "mx.sym.Symbol":
            begin, end = parts[key]
            return mx.sym.slice_axis(win, axis=1, begin=begin, end=end, name=part_name)

        score = part("score", f"rpn_cls_score_stride{s}")
        r = mx.sym.Reshape(score, shape=(0, 2, -1, 0), name=f"rpn_cls_score_reshape_stride{s}")
        p = mx.sym.SoftmaxActivation(r, mode="channel", name=f"rpn_cls_prob_stride{s}")
        heads["scores", s] = mx.sym.Reshape(p, shape=(0, 2 * n_anchor, -1, 0),
                                            name=f"rpn_cls_prob_reshape_stride{s}")

        # (x, y) per anchor, in anchor sides
        centroid = mx.sym.elemwise_div(part("first", f"toy_moment_stride{s}"),
                                       part("mass", f"toy_mass_stride{s}"), name=f"toy_centroid_stride{s}")
        heads["deltas", s] = mx.sym.Convolution(centroid, num_filter=4 * n_anchor, kernel=(1, 1),
                                                name=f"rpn_bbox_pred_stride{s}")
    return mx.sym.Group([heads[o.kind, o.stride] for o in card.outputs])


# ------------------------------------------------------------------------------------------------------------
# Weights


def _square(offsets: np.ndarray, half: float) -> np.ndarray:
    """(K, K) indicator of the kernel cells whose centres lie within ``half`` px of the anchor centre."""
    inside = np.abs(offsets) < half
    return np.outer(inside, inside).astype(np.float64)


def toy_weights(card: ModelCard) -> dict[str, np.ndarray]:
    """Every parameter of :func:`build_toy_symbol` as float32, keyed by argument name. No randomness."""
    n_anchor = card.anchors.per_position
    side = card.preprocess["mxnet"]
    luma = np.asarray(LUMA_RGB if side.channel_order == "RGB" else LUMA_RGB[::-1], np.float64)
    span = MASK_HIGH - MASK_LOW
    params: dict[str, np.ndarray] = {
        "toy_gray_weight": (luma / span).reshape(1, 3, 1, 1),
        "toy_gray_bias": np.array([(luma @ np.asarray(side.mean, np.float64) - MASK_LOW) / span]),
    }
    parts = _window_channels(n_anchor)
    for s in card.strides:
        g = stride_geometry(card, s)
        off = g.offsets()
        dx, dy = np.meshgrid(off, off)  # dx varies along the width (last) axis
        weight = np.zeros((parts["all"][1], 1, g.kernel, g.kernel))
        bias = np.zeros(parts["all"][1])
        head = np.zeros((4 * n_anchor, 2 * n_anchor, 1, 1))
        for k, a in enumerate(g.anchor_sides):
            cells = (a / g.cell) ** 2  # kernel cells in the anchor square
            inner = _square(off, a / 2)
            ring = _square(off, a) - inner
            face = parts["score"][0] + n_anchor + k  # background channels stay 0
            weight[face, 0] = GAIN * (inner - RING_WEIGHT * ring / 3) / cells
            bias[face] = -GAIN * THRESHOLD
            win = _square(off, MOMENT_WINDOW * a / 2)
            for axis, coord in enumerate((dx, dy)):
                weight[parts["mass"][0] + 2 * k + axis, 0] = win
                bias[parts["mass"][0] + 2 * k + axis] = PRIOR_MASS * cells
                weight[parts["first"][0] + 2 * k + axis, 0] = win * coord / a
                head[4 * k + axis, 2 * k + axis] = 1.0  # dx, dy; dw = dh = 0
        params.update({
            f"toy_window_stride{s}_weight": weight, f"toy_window_stride{s}_bias": bias,
            f"rpn_bbox_pred_stride{s}_weight": head, f"rpn_bbox_pred_stride{s}_bias": np.zeros(4 * n_anchor),
        })
    return {k: np.ascontiguousarray(v, np.float32) for k, v in params.items()}


def synthesize_toy(card: ModelCard, directory: str | Path, seed: int = 0) -> Checkpoint:
    """Write the toy detector's ``<prefix>-symbol.json``, ``<prefix>-<epoch>.params`` and ``checkpoint.json``
    (kind "toy") into ``directory`` and return its record.

    The weights are fixed by the card and the constants above; ``seed`` is only recorded (nothing is random),
    so every seed gives byte-identical files.
    """
    symbol = build_toy_symbol(card)
    params = toy_weights(card)
    _check_fit(symbol, params, card)
    return save_checkpoint(symbol, params, {}, directory, card.checkpoint.prefix, card.checkpoint.epoch,
                           kind=TOY_KIND, seed=seed)


def _check_fit(symbol: "mx.sym.Symbol", params: dict[str, np.ndarray], card: ModelCard) -> None:
    """The weights fit the symbol exactly: the same argument names with the same shapes."""
    arg_shapes, _, _ = symbol.infer_shape(**{card.input.name: card.input.shape()})
    expected = {n: tuple(sh) for n, sh in zip(symbol.list_arguments(), arg_shapes) if n != card.input.name}
    got = {n: tuple(a.shape) for n, a in params.items()}
    if expected != got:  # a bug in this module, not a user error
        raise AssertionError(f"toy weights do not fit the toy symbol: expected {expected}, got {got}")
