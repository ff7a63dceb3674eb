"""The toy detector: the SSH output contract at any input size, a softmax over (background, face) pairs, faces
found where they are, and byte-identical checkpoints."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ssh_toolkit.model.anchors import anchor_plane, base_anchors_by_stride
from ssh_toolkit.model.preprocess import to_tensor
from ssh_toolkit.runners.mxnet_import import import_mxnet
from ssh_toolkit.standins.toy import TOY_KIND, build_toy_symbol, stride_geometry, synthesize_toy
from ssh_toolkit.workspace import Checkpoint

mx = import_mxnet()

SIZE = 256  # the tests' input size (any multiple of 32 >= 128 works)
BACKGROUND = 60  # sample background level (40..90)
FACE = 215  # sample face level (200..230)


@pytest.fixture(scope="module")
def checkpoint(card, tmp_path_factory):
    return synthesize_toy(card, tmp_path_factory.mktemp("toy") / "checkpoint", seed=0)


def forward(checkpoint: Checkpoint, card, image_bgr: np.ndarray) -> dict[str, np.ndarray]:
    """One MXNet forward of a square uint8 BGR image (already at the input size): outputs by base name."""
    size = image_bgr.shape[0]
    sym, args, aux = mx.model.load_checkpoint(str(checkpoint.directory / checkpoint.prefix), checkpoint.epoch)
    exe = sym.simple_bind(mx.cpu(), grad_req="null", **{card.input.name: card.input.shape(size)})
    for name, arr in exe.arg_dict.items():
        if name != card.input.name:
            args[name].copyto(arr)
    tensor = to_tensor(image_bgr.astype(np.float32), card.preprocess["mxnet"])
    exe.forward(is_train=False, **{card.input.name: mx.nd.array(tensor)})
    names = [n.removesuffix("_output") for n in sym.list_outputs()]
    return {n: o.asnumpy() for n, o in zip(names, exe.outputs)}


def textured_background(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = BACKGROUND + rng.integers(-15, 16, size=(size, size, 1))
    return np.repeat(img, 3, axis=2).astype(np.uint8)


def draw_face(img: np.ndarray, cx: float, cy: float, w: int, h: int) -> None:
    """A filled bright ellipse of bounding box w x h centred at (cx, cy), with darker eyes and mouth."""
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]] + 0.5
    u, v = (xx - 0.5 - cx) / (w / 2), (yy - 0.5 - cy) / (h / 2)
    img[u ** 2 + v ** 2 <= 1] = FACE
    for ex in (-0.35, 0.35):
        img[((u - ex) / 0.14) ** 2 + ((v + 0.2) / 0.09) ** 2 <= 1] = 110
    img[(u / 0.3) ** 2 + ((v - 0.45) / 0.08) ** 2 <= 1] = 110


def face_probabilities(out: dict[str, np.ndarray], card) -> dict[int, np.ndarray]:
    """Face probability per stride as (H, W, A)."""
    a = card.anchors.per_position
    return {s: out[card.output("scores", s).name][0, a:].transpose(1, 2, 0) for s in card.strides}


@pytest.mark.parametrize("size", [128, 224])
def test_output_names_shapes_and_order(card, size):
    sym = build_toy_symbol(card)
    assert sym.list_arguments()[0] == card.input.name
    assert [n.removesuffix("_output") for n in sym.list_outputs()] == list(card.output_names)
    _, out_shapes, _ = sym.infer_shape(**{card.input.name: card.input.shape(size)})
    a = card.anchors.per_position
    for o, shape in zip(card.outputs, out_shapes):
        channels = 2 * a if o.kind == "scores" else 4 * a
        assert tuple(shape) == (1, channels, size // o.stride, size // o.stride), o.name


def test_forward_at_two_sizes(card, checkpoint):
    for size in (128, 160):
        out = forward(checkpoint, card, textured_background(size))
        assert list(out) == list(card.output_names)
        for o in card.outputs:
            assert out[o.name].shape[2:] == (size // o.stride, size // o.stride)
            assert np.isfinite(out[o.name]).all()


def test_softmax_pairs_sum_to_one(card, checkpoint):
    img = textured_background(SIZE, seed=1)
    draw_face(img, 90, 100, 50, 64)
    draw_face(img, 190, 180, 24, 30)
    out = forward(checkpoint, card, img)
    a = card.anchors.per_position
    for s in card.strides:
        p = out[card.output("scores", s).name][0]
        assert ((p >= 0) & (p <= 1)).all()
        np.testing.assert_allclose(p[:a] + p[a:], 1.0, atol=1e-6)
    # the probabilities are not constant: faces score high, background low
    probs = face_probabilities(out, card)
    assert max(p.max() for p in probs.values()) > 0.5
    assert min(p.min() for p in probs.values()) < 0.05


def test_window_geometry_matches_anchor_centres(card):
    # the kernel is centred on the anchor centre (w*S + 7.5): the centre of the kernel cells is 7.5 - start
    for s in card.strides:
        g = stride_geometry(card, s)
        off = g.offsets()
        np.testing.assert_allclose(off, -off[::-1])  # symmetric around the anchor centre
        assert g.kernel * g.cell == 2 * max(g.anchor_sides)
        base = base_anchors_by_stride(card.anchors)[s]
        assert tuple(base[:, 2] - base[:, 0] + 1) == g.anchor_sides


@pytest.mark.parametrize("stride,k,row,col", [(16, 1, 7, 5), (8, 0, 20, 10), (16, 0, 6, 9), (32, 1, 3, 3)])
def test_one_face_peaks_at_its_anchor(card, checkpoint, stride, k, row, col):
    side = int(card.anchors.base_size * card.anchors.scales[stride][k])
    cx, cy = col * stride + 7.5, row * stride + 7.5
    size = max(SIZE, int(np.ceil((max(cx, cy) + side) / 32)) * 32)
    img = textured_background(size, seed=stride + k)
    w = int(round(side * 0.85))
    draw_face(img, cx, cy, w, side)
    out = forward(checkpoint, card, img)
    probs = face_probabilities(out, card)
    best = max(((s, *np.unravel_index(np.argmax(p), p.shape)) for s, p in probs.items()),
               key=lambda t: probs[t[0]][t[1:]])
    assert best == (stride, row, col, k)
    assert probs[stride][row, col, k] > 0.8
    # far from the face (anchor square disjoint from the face box) every probability is low
    face_box = np.array([cx - w / 2, cy - side / 2, cx + w / 2, cy + side / 2])
    bases = base_anchors_by_stride(card.anchors)
    n_far = 0
    for s, p in probs.items():
        anchors = anchor_plane(p.shape[0], p.shape[1], s, bases[s]).reshape(p.shape + (4,))
        disjoint = ((anchors[..., 2] < face_box[0]) | (anchors[..., 0] > face_box[2])
                    | (anchors[..., 3] < face_box[1]) | (anchors[..., 1] > face_box[3]))
        n_far += int(disjoint.sum())
        if disjoint.any():
            assert p[disjoint].max() < 0.05, s
    assert n_far > 100
    # a centred face needs no shift
    deltas = out[card.output("deltas", stride).name][0, 4 * k:4 * k + 4, row, col]
    assert np.abs(deltas).max() < 0.03


def test_deltas_follow_the_face_centre(card, checkpoint):
    stride, k, row, col = 16, 1, 7, 7
    side = 64
    shift_x, shift_y = 10, -6
    img = textured_background(SIZE, seed=3)
    draw_face(img, col * stride + 7.5 + shift_x, row * stride + 7.5 + shift_y, 54, side)
    out = forward(checkpoint, card, img)
    dx, dy, dw, dh = out[card.output("deltas", stride).name][0, 4 * k:4 * k + 4, row, col]
    assert dx == pytest.approx(shift_x / side, abs=0.03)
    assert dy == pytest.approx(shift_y / side, abs=0.03)
    assert dw == 0 and dh == 0  # the toy does not regress sizes


def test_empty_image_gives_zero_deltas_and_low_scores(card, checkpoint):
    out = forward(checkpoint, card, textured_background(SIZE, seed=4))
    for o in card.outputs:
        if o.kind == "deltas":
            assert not out[o.name].any()
    assert max(p.max() for p in face_probabilities(out, card).values()) < 0.05


def test_same_seed_same_bytes_and_record(card, tmp_path):
    a = synthesize_toy(card, tmp_path / "a", seed=7)
    b = synthesize_toy(card, tmp_path / "b", seed=7)
    assert a.params_path.read_bytes() == b.params_path.read_bytes()
    assert a.symbol_path.read_text() == b.symbol_path.read_text()
    assert a.params_sha256 == b.params_sha256
    c = synthesize_toy(card, tmp_path / "c", seed=8)  # nothing is random: the seed is only recorded
    assert c.params_sha256 == a.params_sha256

    record = json.loads((tmp_path / "a" / Checkpoint.RECORD).read_text())
    assert record["kind"] == TOY_KIND == "toy"
    assert record["weights"] == "standin"
    assert record["seed"] == 7
    loaded = Checkpoint.load(tmp_path / "a")
    assert loaded.kind == "toy" and loaded.is_standin
    assert loaded.params_sha256 == a.params_sha256
    assert a.params_path.name == card.checkpoint.params_file
    assert a.symbol_path.name == card.checkpoint.symbol_file


def test_stretched_face_decodes_onto_its_box(card, checkpoint):
    """A face in a non-square image, stretched to the input size as the protocol does: the best detection,
    decoded back to image pixels, lands on the face."""
    from ssh_toolkit.model.decode import decode
    from ssh_toolkit.model.overlap import metric_iou
    from ssh_toolkit.model.preprocess import resize

    img = cv2.resize(textured_background(400, seed=5), (600, 400), interpolation=cv2.INTER_NEAREST)
    draw_face(img, 300, 180, 120, 110)
    r = resize(img, SIZE)
    dets = decode(forward(checkpoint, card, r.image.astype(np.uint8)), card, r.scale_x, r.scale_y)
    best = int(np.argmax(dets.scores))
    assert dets.scores[best] > 0.8
    face = np.array([[240.0, 125.0, 360.0, 235.0]])
    assert metric_iou(dets.boxes[best:best + 1], face)[0, 0] >= 0.5
