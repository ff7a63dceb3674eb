"""The OpenVINO Accuracy Checker (AC) as oracle (spec §9): its classes and ours, side by side.

* decode: AC's ``RetinaFaceAdapter`` vs :func:`ssh_toolkit.model.decode.decode` on seeded random raw outputs
  (several input sizes, heavy score ties, extreme deltas, a keep_top_k that bites): boxes and scores
  identical, same order.
* metric: AC's ``PostprocessingExecutor`` (cast_to_int, clip_boxes, filter) + ``DetectionMAP`` vs
  :class:`~ssh_toolkit.metric.average_precision.MapAccumulator` on seeded random scenes (score ties,
  duplicate GT, zero-face and all-difficult images, faces straddling 64 px and the 1024 clip, .5
  coordinates): AP equal and per-prediction TP/FP flags identical; difficult flags identical to AC's
  ``difficult_boxes``.
* end to end: random raw outputs -> both decoders -> both metrics.

AC (openvino-dev 2023.3) cannot share an environment with the OpenVINO 2026 runtime: it runs in the legacy
Model Optimizer environment (created on first use by ``ssh_toolkit.legacy_env``, the same one ``convert``
uses) as a subprocess, ``ac_oracle_driver.py``, fed the same raw outputs and predictions as npz (bits kept).
Nothing of AC enters ``ssh_toolkit``.
"""

import dataclasses
import io
import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ssh_toolkit.card import load_card
from ssh_toolkit.metric.average_precision import MapAccumulator
from ssh_toolkit.metric.postprocess import prepare_ground_truth
from ssh_toolkit.model.decode import decode
from ssh_toolkit.model.detections import Detections

CARD = load_card()
P = CARD.protocol
DRIVER = Path(__file__).with_name("ac_oracle_driver.py")


# ---- AC harness: the driver process in the legacy environment ----------------------------------------------

class AccuracyChecker:
    """Client of ac_oracle_driver.py. A hard dependency: if the driver cannot start, the tests fail, not skip."""

    def __init__(self, python: Path) -> None:
        self.proc = subprocess.Popen([str(python), str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.hello = self._receive()[1]
        assert self.hello.get("ready"), self.hello

    def _receive(self) -> tuple[dict, dict]:
        head = self.proc.stdout.read(8)
        assert len(head) == 8, f"the Accuracy Checker driver died (exit {self.proc.poll()}); see stderr above"
        (n,) = struct.unpack(">Q", head)
        with np.load(io.BytesIO(self.proc.stdout.read(n)), allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k != "__meta__"}, json.loads(str(z["__meta__"]))

    def call(self, meta: dict, arrays: dict) -> tuple[dict, dict]:
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.array(json.dumps(meta)), **arrays)
        self.proc.stdin.write(struct.pack(">Q", len(buf.getvalue())) + buf.getvalue())
        self.proc.stdin.flush()
        result, reply = self._receive()
        assert reply["ok"], reply["error"]
        return result, reply

    def decode(self, card, raw, scale_x, scale_y):
        """AC's RetinaFaceAdapter -> (boxes (N,4) as AC holds x_mins, y_mins, x_maxs, y_maxs; scores)."""
        p = card.protocol
        adapter = {"bboxes_outputs": [card.output("deltas", s).name for s in card.strides],
                   "scores_outputs": [card.output("scores", s).name for s in card.strides],
                   "keep_top_k": p.keep_top_k, "nms_threshold": p.nms_threshold,
                   "include_boundaries": p.include_boundaries}
        out, _ = self.call({"op": "decode", "adapter": adapter, "scale_x": scale_x, "scale_y": scale_y}, raw)
        return out["boxes"], out["scores"]

    def evaluate(self, p, images):
        """images: [(id, boxes (N,4), scores (N,) float32, gt (G,4))] -> (AP, tp, fp, [difficult_boxes])"""
        protocol = {"round_policy": p.round_policy, "clip_annotation": p.clip_annotation,
                    "height_range": list(p.height_range), "overlap_threshold": p.overlap_threshold,
                    "ignore_difficult": p.ignore_difficult, "include_boundaries": p.include_boundaries}
        arrays = {}
        for k, (_, b, s, g) in enumerate(images):
            arrays.update({f"b{k}": np.asarray(b), f"s{k}": np.asarray(s), f"g{k}": np.asarray(g)})
        out, reply = self.call({"op": "evaluate", "protocol": protocol, "ids": [i for i, *_ in images]}, arrays)
        return out["ap"], out["tp"], out["fp"], reply["difficult"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def ac(mo_env):
    oracle = AccuracyChecker(mo_env.python)
    assert oracle.hello["numpy"] == "1.23.5"  # really the legacy environment, not this one
    yield oracle
    oracle.close()


def ours_evaluate(p, images):
    acc = MapAccumulator(p)
    for i, b, s, g in images:
        acc.update(i, Detections(b, s), g)
    return acc.compute()


# ---- random inputs ----------------------------------------------------------------------------------------

def random_raw(rng, size, tie_levels=None, extreme=False):
    raw = {}
    for o in CARD.outputs:
        n = size // o.stride
        if o.kind == "scores":
            s = rng.random((1, 4, n, n))
            if tie_levels:
                s = np.floor(s * tie_levels) / tie_levels
            raw[o.name] = s.astype(np.float32)
        else:
            d = rng.normal(0, 0.3, (1, 8, n, n))
            d[:, [2, 3, 6, 7]] *= 2.0
            if extreme:
                mask = rng.random(d.shape) < 0.05
                d[mask] = rng.uniform(-6, 4, mask.sum())  # widths < 1 px (inverted boxes) and large boxes
            raw[o.name] = d.astype(np.float32)
    return raw


def assert_same_decode(ours, theirs):
    ac_boxes, ac_scores = theirs
    assert ours.boxes.shape == ac_boxes.shape
    assert ours.boxes.dtype == ac_boxes.dtype and ours.scores.dtype == ac_scores.dtype
    np.testing.assert_array_equal(ours.scores, ac_scores)
    np.testing.assert_array_equal(ours.boxes, ac_boxes)


DECODE_CASES = [  # (seed, input size, tie levels, extreme deltas, keep_top_k override)
    (0, 64, None, False, None),
    (1, 96, 4, False, None),
    (2, 128, 8, True, None),
    (3, 160, 3, True, 37),
    (4, 160, None, True, 200),
    (5, 128, 2, False, 1),
]


@pytest.mark.parametrize("seed,size,ties,extreme,top_k", DECODE_CASES)
def test_decode_identical_to_ac(seed, size, ties, extreme, top_k, ac):
    rng = np.random.default_rng(seed)
    card = CARD
    if top_k is not None:
        card = dataclasses.replace(CARD, protocol=dataclasses.replace(P, keep_top_k=top_k))
    raw = random_raw(rng, size, ties, extreme)
    w, h = (int(x) for x in rng.integers(100, 2000, 2))
    sx, sy = size / w, size / h
    assert_same_decode(decode(raw, card, sx, sy), ac.decode(card, raw, sx, sy))


@pytest.mark.slow
def test_decode_identical_to_ac_at_640(ac):
    rng = np.random.default_rng(640)
    raw = random_raw(rng, 640, tie_levels=16, extreme=True)
    sx, sy = 640 / 1024, 640 / 683
    assert sy == 0.9370424597364568
    ours = decode(raw, CARD, sx, sy)
    assert_same_decode(ours, ac.decode(CARD, raw, sx, sy))
    assert len(ours) <= 800 + 1000 + 1000


def test_golden_decode_vector_identical_to_ac(ac):
    raw = {o.name: np.zeros((1, 4 if o.kind == "scores" else 8, 640 // o.stride, 640 // o.stride), np.float32)
           for o in CARD.outputs}
    raw["rpn_cls_prob_reshape_stride8"][0, 3, 10, 20] = 0.9
    raw["rpn_cls_prob_reshape_stride16"][0, 2, 5, 7] = 0.8
    raw["rpn_bbox_pred_stride16"][0, 0:4, 5, 7] = (0.1, -0.2, np.log(2), 0)
    ours = decode(raw, CARD, 640 / 1024, 640 / 768)
    assert len(ours) == 446
    assert_same_decode(ours, ac.decode(CARD, raw, 640 / 1024, 640 / 768))


def random_gt(rng, kind):
    """Ground truth for one image, x1y1x2y2 with x2 = x + w; kind in normal / none / all_difficult."""
    if kind == "none":
        return np.zeros((0, 4))
    k = int(rng.integers(1, 7))
    x = rng.uniform(0, 900, k)
    y = rng.uniform(0, 900, k)
    if kind == "all_difficult":
        h = rng.choice([10.0, 30.0, 62.5, 63.0, 0.0], k)
    else:
        h = rng.choice([40.0, 63.0, 63.5, 64.0, 64.5, 65.0, 100.0, 200.0, 300.0], k) + rng.choice([0, 0.5], k)
    w = rng.uniform(0, 150, k).round(1)
    w[rng.random(k) < 0.1] = 0.0  # zero width -> is_empty
    g = np.c_[x.round(1), y.round(1), x.round(1) + w, y.round(1) + h]
    if kind == "normal":
        if rng.random() < 0.4:  # straddling the 1024 clip, or bigger than it
            g = np.r_[g, [[950.0, 900.0, 1100.0, 1100.5]], [[0.0, -20.0, 300.0, 1080.0]]]
        if rng.random() < 0.4:  # exact duplicate GT
            g = np.r_[g, g[:1]]
    if kind == "all_difficult":  # a pair straddling the clip where only 40 px remain
        g = np.r_[g, [[100.0, 984.0, 200.0, 1150.0]]]
    return g


def random_scene(seed):
    rng = np.random.default_rng(1000 + seed)
    levels = [None, 3, 5, 10][seed % 4]
    images = []
    for i in range(int(rng.integers(3, 9))):
        kind = rng.choice(["normal", "normal", "normal", "none", "all_difficult"])
        g = random_gt(rng, kind)
        n = int(rng.integers(0, 40))
        if len(g):
            src = g[rng.integers(0, len(g), n)]
            jit = rng.normal(0, rng.choice([0.0, 3.0, 12.0]), (n, 4))
            jit[rng.random(n) < 0.2] = 0  # exact copies
            b = src + jit
        else:
            b = np.zeros((n, 4))
        noise = rng.random(n) < 0.3
        xy = rng.uniform(-50, 1100, (int(noise.sum()), 2))
        b[noise] = np.c_[xy, xy + rng.uniform(-0.8, 200, (int(noise.sum()), 2))]
        b = b + rng.choice([0.0, 0.5, 0.49], (n, 4))
        s = rng.random(n)
        if levels:
            s = np.floor(s * levels) / levels
        images.append((f"scene{seed}/img{i}.jpg", b, s.astype(np.float32), g))
    return images


@pytest.mark.parametrize("seed", range(40))
def test_map_identical_to_ac(seed, ac):
    images = random_scene(seed)
    ap, tp, fp, difficult = ac.evaluate(P, images)
    ours = ours_evaluate(P, images)
    assert len(ap) == 1
    assert abs(ours.ap - ap[0]) <= 1e-12, (ours.ap, ap[0])
    if ours.n_detections:
        np.testing.assert_array_equal(ours.tp, tp.astype(bool))
        np.testing.assert_array_equal(ours.fp, fp.astype(bool))
    for (_, _, _, g), d in zip(images, difficult):
        assert np.flatnonzero(prepare_ground_truth(g, P).difficult).tolist() == d


def test_spec_golden_scenarios_identical_to_ac(ac):
    a_gt = np.array([[100., 100, 180, 200], [400, 400, 420, 430], [600, 100, 600, 180]])
    a_b = np.array([[100.4, 100.5, 180.2, 199.6], [105, 105, 185, 205], [400, 400, 420, 430],
                    [401, 401, 421, 431], [700, 700, 760, 760]])
    scene1 = [("A", a_b, np.array([.9, .8, .7, .6, .5], np.float32), a_gt),
              ("B", np.array([[0., 0, 50, 50]]), np.array([.95], np.float32), np.zeros((0, 4))),
              ("C", np.array([[10., 10, 110, 110]]), np.array([.3], np.float32),
               np.array([[10., 10, 110, 110]]))]
    scene2 = [("D", np.array([[10., 10, 30, 30]] * 2 + [[500., 500, 600, 600]]),
               np.array([.99, .98, .97], np.float32), np.array([[10., 10, 30, 30]])),
              ("E", np.array([[100., 100, 200, 200]]), np.array([.5], np.float32),
               np.array([[100., 100, 200, 200]]))]
    for scene, expected in ((scene1, 5 / 12), (scene2, 1 / 3)):
        ap, *_ = ac.evaluate(P, scene)
        ours = ours_evaluate(P, scene)
        assert ours.ap == pytest.approx(expected, abs=1e-12)
        assert abs(ours.ap - ap[0]) <= 1e-12


def test_non_finite_boxes_like_ac(ac):
    # NaN / inf coordinates (e.g. an overflowing exp in a broken model): the reference's threshold test lets
    # a NaN IoU through, and such a prediction then counts as a TP that marks no face. We reproduce that.
    inf = np.inf
    images = [
        ("a", np.array([[np.nan, 0, 10, 10], [-inf, -inf, inf, inf], [0, 0, 99, 99], [0, -inf, 99, inf],
                        [0, 0, 99, 99]]), np.array([.9, .8, .7, .6, .5], np.float32),
         np.array([[0., 0, 99, 99], [200, 200, 300, 300]])),
        ("b", np.array([[-inf, -inf, inf, inf], [0, 0, 50, 50]]), np.array([.85, .4], np.float32),
         np.array([[0., 0, 50, 50]])),
    ]
    with np.errstate(invalid="ignore"):
        ap, tp, fp, _ = ac.evaluate(P, images)
        ours = ours_evaluate(P, images)
    assert ours.ap == ap[0]
    np.testing.assert_array_equal(ours.tp, tp.astype(bool))
    np.testing.assert_array_equal(ours.fp, fp.astype(bool))


def test_no_detections_like_ac(ac):
    images = [("x", np.zeros((0, 4)), np.zeros(0, np.float32), np.array([[0., 0, 100, 100]]))]
    ap, *_ = ac.evaluate(P, images)
    assert ours_evaluate(P, images).ap == ap[0] == 0


@pytest.mark.parametrize("seed", range(3))
def test_end_to_end_random_raw_identical_to_ac(seed, ac):
    rng = np.random.default_rng(2000 + seed)
    ours_images, ac_images = [], []
    for i in range(4):
        raw = random_raw(rng, 128, tie_levels=6, extreme=bool(i % 2))
        w, h = (int(x) for x in rng.integers(120, 600, 2))
        sx, sy = 128 / w, 128 / h
        d = decode(raw, CARD, sx, sy)
        t_boxes, t_scores = ac.decode(CARD, raw, sx, sy)
        g = random_gt(rng, ["normal", "none", "all_difficult", "normal"][i]) * np.array([w, h, w, h]) / 1000
        if i != 1:  # faces where some detections are, so that there are TPs, duplicates and ignored hits
            pick = d.boxes[rng.integers(0, len(d), 5)]
            g = np.r_[g, pick + rng.normal(0, 2, pick.shape)]
        ours_images.append((f"e{i}", d.boxes, d.scores, g))
        ac_images.append((f"e{i}", t_boxes, t_scores, g))
    ap, tp, fp, _ = ac.evaluate(P, ac_images)
    ours = ours_evaluate(P, ours_images)
    assert abs(ours.ap - ap[0]) <= 1e-12
    np.testing.assert_array_equal(ours.tp, tp.astype(bool))
    np.testing.assert_array_equal(ours.fp, fp.astype(bool))
