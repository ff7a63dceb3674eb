"""The seeded stand-in checkpoint: reproducible bytes, its record, and sane outputs on a small forward."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ssh_toolkit.model.outputs import canonical_name
from ssh_toolkit.standins.architecture import build_ssh_symbol, count_parameters
from ssh_toolkit.standins.synthesize import bilinear_kernel, synthesize_standin
from ssh_toolkit.workspace import Checkpoint

SMALL = 128  # forward passes at 128x128 cost ~0.2 s instead of ~2 s at 640


@pytest.fixture(scope="module")
def standin(card, tmp_path_factory):
    return synthesize_standin(card, tmp_path_factory.mktemp("standin") / "ck", seed=0)


@pytest.fixture(scope="module")
def loaded(standin):
    from ssh_toolkit.runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    return mx.model.load_checkpoint(str(standin.directory / standin.prefix), standin.epoch)


@pytest.fixture(scope="module")
def forward(card, loaded):
    """Outputs by canonical name for a seeded uniform-noise image (RGB 0..255 minus the card's mean)."""
    from ssh_toolkit.runners.mxnet_import import import_mxnet

    mx = import_mxnet()

    sym, args, aux = loaded
    mxnet_side = card.preprocess["mxnet"]
    image = np.random.default_rng(1).uniform(0, 255, (1, 3, SMALL, SMALL)).astype(np.float32)
    data = image - np.asarray(mxnet_side.mean, np.float32).reshape(1, 3, 1, 1)
    ex = sym.bind(mx.cpu(), {card.input.name: mx.nd.array(data), **args}, aux_states=aux, grad_req="null")
    outs = ex.forward()
    return {canonical_name(n): o.asnumpy() for n, o in zip(sym.list_outputs(), outs)}


def test_files_and_record(card, standin):
    assert standin.symbol_path.name == "sshb-symbol.json"
    assert standin.params_path.name == "sshb-0000.params"
    record = json.loads((standin.directory / "checkpoint.json").read_text())
    assert record["kind"] == "standin"
    assert record["weights"] == "standin"
    assert record["seed"] == 0
    assert standin.is_standin
    reloaded = Checkpoint.load(standin.directory)
    assert reloaded.kind == "standin" and reloaded.params_sha256 == standin.params_sha256


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(card, standin, tmp_path):
    again = synthesize_standin(card, tmp_path / "again", seed=0)
    assert again.params_path.read_bytes() == standin.params_path.read_bytes()
    assert again.symbol_path.read_bytes() == standin.symbol_path.read_bytes()
    assert again.params_sha256 == standin.params_sha256
    other = synthesize_standin(card, tmp_path / "other", seed=1)
    assert other.params_sha256 != standin.params_sha256
    assert other.params_path.read_bytes() != standin.params_path.read_bytes()


def test_checkpoint_binds_to_the_architecture(card, loaded):
    sym, args, aux = loaded
    assert aux == {}
    built = build_ssh_symbol(card)
    assert sym.tojson() == built.tojson()
    assert set(args) == set(built.list_arguments()) - {card.input.name}
    assert count_parameters([a.shape for a in args.values()]) == card.reference_params == 19_768_420
    assert all(a.dtype == np.float32 for a in args.values())


def test_weight_initialisation(loaded):
    _, args, _ = loaded
    up = args["ssh_m2_red_upsampling_weight"].asnumpy()
    assert up.shape == (128, 1, 4, 4)
    assert np.array_equal(up, np.broadcast_to(bilinear_kernel(4), up.shape))
    first = args["conv1_1_weight"].asnumpy()
    assert first.std() == pytest.approx(np.sqrt(2 / 27) / 64, rel=0.1)
    deep = args["conv5_3_weight"].asnumpy()
    assert deep.std() == pytest.approx(np.sqrt(2 / (512 * 9)), rel=0.02)
    bias = args["conv3_1_bias"].asnumpy()
    assert 0 < np.abs(bias).max() < 0.1
    for name in ("rpn_bbox_pred_stride8_weight", "rpn_cls_score_stride32_weight"):
        assert 0 < args[name].asnumpy().std() < 0.1


def test_bilinear_kernel():
    k = bilinear_kernel(4)
    taps = np.array([0.25, 0.75, 0.75, 0.25], np.float32)
    assert np.allclose(k, np.outer(taps, taps))
    # stride 2: each output pixel takes taps {0, 2} or {1, 3} on each axis, which sum to 1
    assert k[::2, ::2].sum() == pytest.approx(1) and k[1::2, 1::2].sum() == pytest.approx(1)


def test_output_shapes_at_small_size(card, forward):
    assert list(forward) == list(card.output_names)
    for o in card.outputs:
        channels = 4 if o.kind == "scores" else 8
        assert forward[o.name].shape == (1, channels, SMALL // o.stride, SMALL // o.stride)


def test_softmax_pairs_background_and_face_per_anchor(card, forward):
    for o in card.outputs:
        if o.kind != "scores":
            continue
        p = forward[o.name]
        assert (p >= 0).all() and (p <= 1).all()
        np.testing.assert_allclose(p[:, 0] + p[:, 2], 1, atol=1e-6)
        np.testing.assert_allclose(p[:, 1] + p[:, 3], 1, atol=1e-6)


def test_face_probabilities_are_not_degenerate(card, forward):
    face = np.concatenate([forward[o.name][:, 2:].ravel() for o in card.outputs if o.kind == "scores"])
    assert face.min() < 1e-2
    assert face.max() > 0.99
    assert face.std() > 0.1  # N(0, 0.01) weights give 0.5 +- 1e-8 everywhere


def test_deltas_stay_in_a_realistic_range(card, forward):
    deltas = np.concatenate([forward[o.name].ravel() for o in card.outputs if o.kind == "deltas"])
    assert np.isfinite(deltas).all()
    assert 0.5 < deltas.std() < 10
    assert np.abs(deltas).max() < 30  # exp(dw) must not overflow in the decoder
