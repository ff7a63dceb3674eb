"""mAP: golden scenarios (spec §5.4), matching rules (§5.2), AP arithmetic (§5.3), batching invariance."""

import dataclasses

import numpy as np
import pytest

from ssh_toolkit.card import load_card
from ssh_toolkit.metric.average_precision import MapAccumulator, precision_recall, voc_ap
from ssh_toolkit.metric.match import match_image
from ssh_toolkit.model.detections import Detections, GroundTruth

P = load_card().protocol


def dets(rows):
    rows = np.array(rows, np.float64).reshape(-1, 5)
    return Detections(rows[:, :4].copy(), rows[:, 4].astype(np.float32))


def gt_xywh(rows):
    r = np.array(rows, np.float64).reshape(-1, 4)
    return np.c_[r[:, :2], r[:, :2] + r[:, 2:]]


def run(images, protocol=P):
    acc = MapAccumulator(protocol)
    for i, (d, g) in enumerate(images):
        acc.update(f"img{i}", d, g)
    return acc.compute()


# ---- golden scenarios -------------------------------------------------------------------------------------

GOLDEN_A = [
    (dets([[100.4, 100.5, 180.2, 199.6, .9], [105, 105, 185, 205, .8], [400, 400, 420, 430, .7],
           [401, 401, 421, 431, .6], [700, 700, 760, 760, .5]]),
     gt_xywh([[100, 100, 80, 100], [400, 400, 20, 30], [600, 100, 0, 80]])),
    (dets([[0, 0, 50, 50, .95]]), np.zeros((0, 4))),
    (dets([[10, 10, 110, 110, .3]]), gt_xywh([[10, 10, 100, 100]])),
]


def test_golden_scenario_0_416667():
    r = run(GOLDEN_A)
    assert r.ap == pytest.approx(0.5 * 0.5 + 0.5 * (2 / 6), abs=1e-15)
    assert round(r.ap, 6) == 0.416667
    assert r.n_pos == 2 and r.n_gt == 4 and r.n_detections == 7 and r.n_images == 3
    # ranked: .95 FP, .9 TP, .8 FP, .7 ignored, .6 FP, .5 FP, .3 TP
    np.testing.assert_array_equal(r.tp, [0, 1, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(r.fp, [1, 0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(r.tp_per_image, [1, 0, 1])
    np.testing.assert_array_equal(r.fp_per_image, [3, 1, 0])
    np.testing.assert_array_equal(r.ignored_per_image, [1, 0, 0])
    np.testing.assert_array_equal(r.pos_per_image, [1, 0, 1])
    assert r.map_percent == pytest.approx(41.6667, abs=1e-4)
    assert "41.67%" in str(r)


def test_golden_scenario_one_third():
    r = run([
        (dets([[10, 10, 30, 30, .99], [10, 10, 30, 30, .98], [500, 500, 600, 600, .97]]),
         np.array([[10., 10, 30, 30]])),
        (dets([[100, 100, 200, 200, .5]]), np.array([[100., 100, 200, 200]])),
    ])
    assert r.ap == pytest.approx(1 / 3, abs=1e-15)
    np.testing.assert_array_equal(r.tp, [0, 0, 0, 1])
    np.testing.assert_array_equal(r.fp, [0, 1, 1, 0])


def test_duplicate_gt_consumed_by_one_prediction():
    box = [100., 100, 200, 200]
    r = run([(dets([box + [.9], box + [.8]]), np.array([box, box]))])
    assert r.ap == 0.5


# ---- simple named scenarios -------------------------------------------------------------------------------

def test_perfect_is_one_and_miss_is_zero():
    g = np.array([[0., 0, 99, 99], [200, 200, 299, 299]])
    assert run([(dets([[0, 0, 99, 99, .9], [200, 200, 299, 299, .8]]), g)]).ap == 1.0
    assert run([(dets([[500, 500, 599, 599, .9]]), g)]).ap == 0.0


def test_no_detections_reports_zero():
    r = run([(Detections.empty(), np.array([[0., 0, 99, 99]]))])
    assert r.ap == 0.0 and r.n_detections == 0 and r.n_pos == 1
    assert run([]).n_images == 0


def test_zero_gt_image_predictions_are_false_positives():
    r = run([(dets([[0, 0, 99, 99, .9]]), np.array([[0., 0, 99, 99]])),
             (dets([[0, 0, 99, 99, .95], [5, 5, 50, 50, .1]]), np.zeros((0, 4)))])
    np.testing.assert_array_equal(r.fp, [1, 0, 1])
    assert r.ap == 0.5


def test_threshold_is_inclusive():
    # IoU exactly 0.5: 100x100 GT, prediction of 100 x 50 inside -> inter 5000 / union 10000
    g = np.array([[0., 0, 99, 99]])
    assert run([(dets([[0, 0, 99, 49, .9]]), g)]).ap == 1.0
    assert run([(dets([[0, 0, 99, 48, .9]]), g)]).ap == 0.0


def test_voc_ap_all_point_not_11_point():
    assert voc_ap([1.0], [0.5]) == 0.5
    assert voc_ap([], []) == 0.0
    # envelope: later higher precision lifts earlier points
    p, r = precision_recall([1, 0, 1, 0], [0, 1, 0, 1], 2)
    np.testing.assert_allclose(p, [1, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(r, [0.5, 0.5, 1, 1])
    assert voc_ap(p, r) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


# ---- matching rules ---------------------------------------------------------------------------------------

def test_non_difficult_priority_over_ignored():
    # prediction overlaps an ignored face better, but a positive face reaches 0.5 -> TP on the positive
    g = np.array([[0., 0, 99, 99], [0., 0, 99, 79]])
    m = match_image(np.array([[0., 0, 99, 79]]), g, np.array([False, True]))
    assert m.tp.tolist() == [True]


def test_no_fallback_to_second_best():
    g = np.array([[0., 0, 99, 99], [0., 0, 99, 89]])
    p = np.array([[0., 0, 99, 99], [0., 0, 99, 98]])  # both best-match GT 0; GT 1 (0.9) is never used
    m = match_image(p, g, np.array([False, False]))
    assert m.tp.tolist() == [True, False] and m.fp.tolist() == [False, True]


def test_tie_with_difficult_face_goes_to_ignored_branch():
    # identical positive and difficult GT: H contains a difficult face -> first prediction is ignored
    g = np.array([[0., 0, 99, 99], [0., 0, 99, 99]])
    m = match_image(np.array([[0., 0, 99, 99], [0., 0, 99, 99]]), g, np.array([False, True]))
    assert m.tp.tolist() == [False, False] and m.fp.tolist() == [False, True]


def test_fp_in_tie_does_not_mark_unused_face():
    # A hits {g0}; B ties {g0, g1} -> g0 used -> FP, g1 stays free; C hits {g1} -> TP
    g_a = np.array([[0., 0, 99, 99], [2., 0, 101, 99]])
    p = np.array([[0., 0, 99, 99], [1., 0, 100, 99], [2., 0, 101, 99]])
    m = match_image(p, g_a, np.array([False, False]))
    # p1 has equal IoU with both faces -> tie, g0 already used -> FP; p2 best is g1 -> TP
    assert m.tp.tolist() == [True, False, True] and m.fp.tolist() == [False, True, False]


def naive_match(boxes, gt, diff, thr=0.5):
    """Straight transcription of spec §5.2, one prediction at a time (test reference)."""
    from ssh_toolkit.model.overlap import metric_iou
    tp, fp = np.zeros(len(boxes), bool), np.zeros(len(boxes), bool)
    used = np.zeros(len(gt), bool)
    for r, b in enumerate(boxes):
        if len(gt) == 0:
            fp[r] = True
            continue
        ov = metric_iou(b[None], gt)[0]
        m = ov[~diff].max() if (~diff).any() else -np.inf
        if m < thr and diff.any():
            m = ov[diff].max()
        if m < thr:
            fp[r] = True
            continue
        h = ov == m
        if not diff[h].any():
            if not used[h].any():
                tp[r] = True
                used[h] = True
            else:
                fp[r] = True
        else:
            if used[h].any():
                fp[r] = True
            used[h] = True
    return tp, fp


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_match_equals_sequential(seed):
    rng = np.random.default_rng(seed)
    tiny = seed % 2 == 1  # tiny faces make IoU ties between different faces common
    span, size, jitter = (60, 4, 2) if tiny else (200, 60, 6)
    g = rng.integers(0, span, (rng.integers(0, 14), 2)).astype(float)
    g = np.c_[g, g + rng.integers(0, size, g.shape)]
    if seed % 3 == 0 and len(g):
        g = np.r_[g, g[:2]]  # duplicates -> IoU ties
    diff = rng.random(len(g)) < 0.3
    src = g[rng.integers(0, len(g), 80)] if len(g) else np.zeros((80, 4))
    p = np.rint(src + rng.integers(-jitter, jitter + 1, (80, 4)))
    m = match_image(p, g, diff)
    tp, fp = naive_match(p, g, diff)
    np.testing.assert_array_equal(m.tp, tp)
    np.testing.assert_array_equal(m.fp, fp)


# ---- accumulator behaviour --------------------------------------------------------------------------------

def random_images(seed, n=40):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = rng.integers(0, 6)
        xy = rng.uniform(0, 900, (k, 2))
        g = np.c_[xy, xy + rng.uniform(20, 150, (k, 2))]
        src = g[rng.integers(0, k, 30)] if k else rng.uniform(0, 900, (30, 4))
        b = src + rng.normal(0, 8, (30, 4))
        s = np.round(rng.random(30), 1).astype(np.float32)  # heavy ties
        out.append((Detections(b, s), g))
    return out


def test_batched_merged_and_one_shot_identical():
    imgs = random_images(3)
    one = run(imgs)
    a, b = MapAccumulator(P), MapAccumulator(P)
    a.update_many((f"img{i}", d, g) for i, (d, g) in enumerate(imgs[:17]))
    b.update_many((f"img{i}", d, g) for i, (d, g) in enumerate(imgs[17:], start=17))
    merged = a.merge(b).compute()
    assert merged.ap == one.ap
    np.testing.assert_array_equal(merged.precision, one.precision)
    again = a.compute()
    assert again.ap == one.ap  # compute is repeatable


def test_prepared_inputs_give_same_result():
    from ssh_toolkit.metric.postprocess import prepare_detections, prepare_ground_truth
    imgs = random_images(4)
    prepped = [(prepare_detections(d, P), prepare_ground_truth(g, P)) for d, g in imgs]
    assert run(prepped).ap == run(imgs).ap


def test_duplicate_image_id_rejected():
    acc = MapAccumulator(P).update("a", Detections.empty(), np.zeros((0, 4)))
    with pytest.raises(ValueError, match="already"):
        acc.update("a", Detections.empty(), np.zeros((0, 4)))
    other = MapAccumulator(dataclasses.replace(P, overlap_threshold=0.7))
    with pytest.raises(ValueError, match="protocols"):
        acc.merge(other)
    assert len(acc.reset()) == 0


def test_ground_truth_record_input():
    g = GroundTruth(np.array([[0., 0, 99, 99]]), np.array([True]))  # reader-marked difficult
    r = run([(dets([[0, 0, 99, 99, .9]]), g)])
    assert r.n_pos == 0 and r.ignored_per_image.tolist() == [1]
