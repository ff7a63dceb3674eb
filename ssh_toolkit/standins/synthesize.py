"""A seeded stand-in checkpoint with the exact SSH architecture (the real weights cannot be fetched).

Weights follow the spec's "A stand-in checkpoint" section: He-normal convolutions (the first one scaled by
1/64 because it sees raw pixels minus the mean), small random biases, a bilinear kernel in the depthwise
upsampling deconvolution, and small-std heads so box deltas have a std of about 2 and face probabilities span
roughly 3e-5..1. The same seed gives byte-identical ``.params``. Everything made from it must say "stand-in".
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..card import ModelCard
from ..workspace import Checkpoint
from .architecture import build_ssh_symbol, parameter_shapes
from .mxnet_checkpoint import save_checkpoint

STANDIN_KIND = "standin"
FIRST_CONV = "conv1_1_weight"
FIRST_CONV_SCALE = 1.0 / 64.0  # the first convolution sees raw pixels (about +-128), not unit activations
BIAS_STD = 0.01
# 1x1 heads, N(0, std^2): far below He-normal, which drives deltas to +-100 and overflows exp(dw) in decoding.
SCORE_HEAD = "rpn_cls_score_"
SCORE_HEAD_STD = 0.06  # face-vs-background logits spread enough that probabilities reach about 3e-5..1
DELTA_HEAD_STD = 0.045  # box deltas with a std of about 2 on a photo at 640x640
UPSAMPLING = "ssh_m2_red_upsampling_weight"


def bilinear_kernel(size: int) -> np.ndarray:
    """(size, size) kernel making a stride-``ceil(size/2)`` transposed convolution a bilinear upsampler."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1.0 - np.abs(np.arange(size, dtype=np.float64) - center) / factor
    return np.outer(taps, taps).astype(np.float32)


def he_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, 2 / fan_in) for a convolution weight (out, in, kh, kw)."""
    fan_in = int(np.prod(shape[1:]))
    w = rng.standard_normal(shape, dtype=np.float32)
    w *= np.float32(np.sqrt(2.0 / fan_in))
    return w


def standin_weights(shapes: dict[str, tuple[int, ...]], seed: int,
                    delta_layers: Iterable[str]) -> dict[str, np.ndarray]:
    """Seeded weights for every parameter, drawn in the given (architecture) order.

    ``delta_layers`` names the box-delta head convolutions (they are the deltas outputs).
    """
    rng = np.random.default_rng(seed)
    delta_heads = {f"{n}_weight" for n in delta_layers}
    params: dict[str, np.ndarray] = {}
    for name, shape in shapes.items():
        if name == UPSAMPLING:
            params[name] = np.broadcast_to(bilinear_kernel(shape[-1]), shape).copy()
        elif name.endswith("_bias"):
            params[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(BIAS_STD)
        elif name.startswith(SCORE_HEAD):
            params[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(SCORE_HEAD_STD)
        elif name in delta_heads:
            params[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(DELTA_HEAD_STD)
        else:
            params[name] = he_normal(rng, shape)
            if name == FIRST_CONV:
                params[name] *= np.float32(FIRST_CONV_SCALE)
    return params


def synthesize_standin(card: ModelCard, directory: str | Path, seed: int = 0,
                       input_size: int | None = None) -> Checkpoint:
    """Write a stand-in ``<prefix>-symbol.json`` / ``<prefix>-<epoch>.params`` / ``checkpoint.json`` (kind
    "standin") into ``directory`` and return its record.

    ``input_size`` is the square size the symbol is shape-checked at (default the card's); the weights do not
    depend on it.
    """
    symbol = build_ssh_symbol(card)
    shapes = parameter_shapes(symbol, card.input.shape(input_size), card.input.name)
    params = standin_weights(shapes, seed, [o.name for o in card.outputs if o.kind == "deltas"])
    return save_checkpoint(symbol, params, {}, directory, card.checkpoint.prefix, card.checkpoint.epoch,
                           kind=STANDIN_KIND, seed=seed)
