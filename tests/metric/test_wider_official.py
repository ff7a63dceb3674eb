"""Official WIDER FACE Easy/Medium/Hard AP (spec §8): hand-checkable scenarios, the .mat reader on generated
files that mimic the real cell nesting, and an independent loop-by-loop re-implementation on random scenes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from conftest import cell, write_mats

from ssh_toolkit.data.wider_official_gt import load_official_ground_truth
from ssh_toolkit.errors import InputDataError
from ssh_toolkit.metric.wider_official import (
    NO_GROUND_TRUTH,
    SETTINGS,
    official_ap,
    official_iou,
)
from ssh_toolkit.model.detections import Detections

# One image, four faces (x y w h): f0, f1 listed everywhere, f2 from Medium on, f3 (small) only in Hard.
FACES = np.array([[10, 10, 50, 60], [100, 10, 50, 60], [200, 10, 50, 60], [300, 10, 20, 20]], float)
KEEP = {"easy": [0, 1], "medium": [0, 1, 2], "hard": [0, 1, 2, 3]}


def xyxy(xywh):
    xywh = np.asarray(xywh, float).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def keep_of(per_image: dict[str, dict[str, list[int]]]) -> dict[str, dict[str, np.ndarray]]:
    """{image: {setting: idx}} -> {setting: {image: idx}}"""
    return {s: {i: np.array(k.get(s, []), np.int64) for i, k in per_image.items()} for s in SETTINGS}


def ap_one_image(pred_faces, scores, extra_preds=None, **kw):
    """AP on the FACES image, predictions = exact boxes of ``pred_faces`` (+ extra x1y1x2y2 boxes)."""
    boxes = xyxy(FACES[pred_faces]) if len(pred_faces) else np.zeros((0, 4))
    if extra_preds is not None:
        boxes = np.concatenate([boxes, np.asarray(extra_preds, float).reshape(-1, 4)])
    gts = {"e/a.jpg": FACES, **kw.pop("more_gt", {})}
    preds = {"e/a.jpg": (boxes, np.asarray(scores, float)), **kw.pop("more_preds", {})}
    keep = keep_of({"e/a.jpg": KEEP, **kw.pop("more_keep", {})})
    return official_ap(preds, gts, keep, **kw)


# ------------------------------------------------------------------------------------------------- scenarios

def test_iou_float32_plus_one():
    iou = official_iou(np.array([[0, 0, 9, 9], [0, 0, 9, 9], [0, 0, 9, 9]], float),
                       np.array([[5, 0, 14, 9], [10, 0, 19, 9], [9, 9, 20, 20]], float))
    assert iou.dtype == np.float32
    assert iou[0, 0] == np.float32(50) / np.float32(150)  # iw = 9 - 5 + 1 = 5
    assert iou[1, 1] == 0  # iw = 9 - 10 + 1 = 0: no overlap (only > 0 counts)
    assert iou[2, 2] == np.float32(1) / np.float32(100 + 144 - 1)  # a single shared pixel


def test_perfect_detector_is_one_everywhere():
    # ignored faces detected exactly do not count as proposals, so Easy stays at 1.0 too
    assert ap_one_image([0, 1, 2, 3], [0.9, 0.8, 0.7, 0.6]) == {"easy": 1.0, "medium": 1.0, "hard": 1.0}


def test_detector_missing_half_the_faces():
    ap = ap_one_image([0, 1], [0.9, 0.8])
    assert ap["easy"] == 1.0
    assert ap["medium"] == pytest.approx(2 / 3, abs=1e-15)
    assert ap["hard"] == 0.5


def test_duplicates_of_an_ignored_face_are_not_false_positives():
    # ranking: f3 .95, f0 .9, f3 .85, f3 .75, f1 .5 (f2 missed)
    shift = np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 0, 0]])
    boxes = xyxy(FACES[[3, 0, 3, 3, 1]]) + shift
    scores = [0.95, 0.9, 0.85, 0.75, 0.5]
    ap = official_ap({"e/a.jpg": (boxes, scores)}, {"e/a.jpg": FACES}, keep_of({"e/a.jpg": KEEP}))
    assert ap["easy"] == 1.0  # all three f3 detections vanish from the proposals
    assert ap["medium"] == pytest.approx(2 / 3, abs=1e-15)
    # Hard lists f3: first detection TP, the next two are repeated matches = FPs:
    # P/R = 1/.25, 1/.5, 2/3/.5, 2/4/.5, 3/5/.75 -> AP = .25 + .25 + .25 * .6
    assert ap["hard"] == pytest.approx(0.65, abs=1e-15)


def test_best_match_is_taken_over_all_faces_ignored_ones_included():
    # the prediction is exactly face 1 (ignored in Easy/Medium) and also overlaps listed face 0 with IoU 0.90:
    # argmax picks face 1, so in Easy/Medium nothing is recalled (no fall-back to the listed face)
    faces = np.array([[0, 0, 100, 100], [10, 0, 90, 100]], float)
    preds = {"e/a.jpg": (xyxy(faces[[1]]), np.array([0.8])), "e/b.jpg": (np.array([[0, 0, 5, 5.]]), [0.1])}
    ap = official_ap(preds, {"e/a.jpg": faces, "e/b.jpg": faces[:1]},
                     keep_of({"e/a.jpg": {"easy": [0], "medium": [0], "hard": [0, 1]}, "e/b.jpg": {}}))
    assert ap["easy"] == 0.0 and ap["medium"] == 0.0
    assert ap["hard"] == 0.5  # in Hard face 1 is listed: recalled, 1 of 2 faces


def test_gt_free_images_are_skipped_but_listed_faces_of_prediction_free_images_count():
    # a GT-free image with a top-scoring prediction: skipped, not an FP
    ap = ap_one_image([0, 1, 2, 3], [0.9, 0.8, 0.7, 0.6], more_gt={"e/empty.jpg": np.zeros((0, 4))},
                      more_preds={"e/empty.jpg": (np.array([[0, 0, 50, 50.]]), [0.99])},
                      more_keep={"e/empty.jpg": {}})
    assert ap == {"easy": 1.0, "medium": 1.0, "hard": 1.0}
    # an image with two listed faces and no prediction (or no entry at all): skipped, its faces still count
    other = {"e/c.jpg": FACES[:2]}
    for more_preds in ({"e/c.jpg": (np.zeros((0, 4)), np.zeros(0))}, {}):
        ap = ap_one_image([0, 1, 2, 3], [0.9, 0.8, 0.7, 0.6], more_gt=other, more_preds=more_preds,
                          more_keep={"e/c.jpg": {"easy": [0, 1], "medium": [0, 1], "hard": [0, 1]}})
        assert ap == {"easy": 0.5, "medium": 0.6, "hard": pytest.approx(4 / 6, abs=1e-15)}


def test_scores_in_the_same_threshold_step_are_not_separated():
    # TP normalised 1.0, FP 0.9996: both enter at threshold 0.999 -> precision 1/2 at recall 1 (per-prediction
    # ranking would give AP 1). The third prediction (score 0) only pins the normalisation minimum.
    far = [[500, 500, 520, 520], [600, 600, 620, 620]]
    ap = ap_one_image([0], [0.9995, 0.9993, 0.0], extra_preds=far)
    assert ap["easy"] == 0.25  # recall 1/2 (f1 missed), precision 1/2
    ap = ap_one_image([0], [0.9995, 0.99, 0.0], extra_preds=far)  # FP one step lower: TP alone first
    assert ap["easy"] == 0.5


def test_score_normalisation_starts_from_zero_and_one():
    # scores above 1 or below 0 are min-max normalised like any other
    a = ap_one_image([0, 1, 2, 3], [90.0, 80.0, 70.0, 60.0])
    b = ap_one_image([0, 1, 2, 3], [-0.1, -0.2, -0.3, -0.4])
    assert a == b == {"easy": 1.0, "medium": 1.0, "hard": 1.0}


def test_detections_record_accepted_and_sentinel_for_empty_setting():
    dets = Detections(xyxy(FACES[:2]), np.array([0.9, 0.8], np.float32))
    keep = keep_of({"e/a.jpg": {"easy": [], "medium": [0, 1], "hard": [0, 1, 2, 3]}})
    ap = official_ap({"e/a.jpg": dets}, {"e/a.jpg": FACES}, keep)
    assert ap == {"easy": NO_GROUND_TRUTH, "medium": 1.0, "hard": 0.5}


def test_no_predictions_at_all_gives_zero():
    assert ap_one_image([], []) == {"easy": 0.0, "medium": 0.0, "hard": 0.0}


def test_bad_inputs():
    with pytest.raises(InputDataError, match="all 2 prediction scores equal 0.5"):
        ap_one_image([0, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match="not in the ground truth"):
        ap_one_image([0], [0.9], more_preds={"x/y.jpg": (np.zeros((1, 4)), [0.1])})
    with pytest.raises(ValueError, match=r"boxes must be \(N, 4\)"):
        official_ap({"e/a.jpg": (np.zeros((2, 3)), [0.1, 0.2])}, {"e/a.jpg": FACES},
                    keep_of({"e/a.jpg": KEEP}))
    with pytest.raises(ValueError, match="indices must be in 0..3"):
        official_ap({"e/a.jpg": (xyxy(FACES), [0.1, 0.2, 0.3, 0.4])}, {"e/a.jpg": FACES},
                    keep_of({"e/a.jpg": {"easy": [4]}}))


# ------------------------------------------------------------------------------------------- the .mat reader

SCENE = {
    "0--Parade": [("0_Parade_a", FACES, {"easy": [1, 2], "medium": [1, 2, 3], "hard": [1, 2, 3, 4]}),
                  ("0_Parade_empty", np.zeros((0, 4)), {})],
    "1--Handshaking": [("1_Handshaking_b", FACES[:1], {"medium": [1], "hard": [1]})],
}


def test_load_official_ground_truth(tmp_path):
    gt = load_official_ground_truth(write_mats(tmp_path / "gt", SCENE))
    assert list(gt.boxes_xywh) == ["0--Parade/0_Parade_a.jpg", "0--Parade/0_Parade_empty.jpg",
                                   "1--Handshaking/1_Handshaking_b.jpg"]
    np.testing.assert_array_equal(gt.boxes_xywh["0--Parade/0_Parade_a.jpg"], FACES)
    assert gt.boxes_xywh["0--Parade/0_Parade_empty.jpg"].shape == (0, 4)
    assert gt.keep["easy"]["0--Parade/0_Parade_a.jpg"].tolist() == [0, 1]  # 0-based now
    assert gt.keep["hard"]["0--Parade/0_Parade_a.jpg"].tolist() == [0, 1, 2, 3]
    assert gt.keep["easy"]["1--Handshaking/1_Handshaking_b.jpg"].tolist() == []
    assert gt.keep["medium"]["1--Handshaking/1_Handshaking_b.jpg"].tolist() == [0]
    # the real file's nesting as loadmat returns it
    raw = scipy.io.loadmat(str(tmp_path / "gt" / "wider_face_val.mat"))
    assert raw["file_list"].shape == (2, 1) and raw["file_list"][0][0].shape == (2, 1)
    assert str(raw["file_list"][0][0][1][0][0]) == "0_Parade_empty"

    preds = {"0--Parade/0_Parade_a.jpg": (xyxy(FACES[:2]), np.array([0.9, 0.8])),
             "0--Parade/0_Parade_empty.jpg": (np.array([[1, 1, 9, 9.]]), np.array([0.1]))}
    assert gt.evaluate(preds) == {"easy": 1.0, "medium": 0.5, "hard": pytest.approx(2 / 5, abs=1e-15)}
    sub = gt.subset(["0--Parade/0_Parade_a.jpg", "0--Parade/0_Parade_empty.jpg"])
    assert len(sub) == 2
    assert sub.evaluate(preds) == {"easy": 1.0, "medium": pytest.approx(2 / 3, abs=1e-15), "hard": 0.5}
    with pytest.raises(InputDataError, match="no image 'x/y.jpg'"):
        gt.subset(["x/y.jpg"])


def test_load_errors(tmp_path):
    with pytest.raises(InputDataError, match="folder of the official WIDER FACE ground truth not found"):
        load_official_ground_truth(tmp_path / "absent")
    folder = write_mats(tmp_path / "a", SCENE, skip=("wider_medium_val.mat",))
    with pytest.raises(InputDataError) as err:
        load_official_ground_truth(folder)
    assert str(err.value).startswith(f"{folder / 'wider_medium_val.mat'}: missing")

    folder = write_mats(tmp_path / "b", SCENE)
    (folder / "wider_hard_val.mat").write_bytes(b"\x00garbage" * 40)
    with pytest.raises(InputDataError, match="wider_hard_val.mat: cannot read MATLAB file"):
        load_official_ground_truth(folder)

    folder = write_mats(tmp_path / "c", SCENE)
    scipy.io.savemat(str(folder / "wider_easy_val.mat"), {"other": np.zeros(1)})
    with pytest.raises(InputDataError, match="wider_easy_val.mat: no variable 'gt_list'"):
        load_official_ground_truth(folder)

    bad = {**SCENE, "1--Handshaking": [("1_Handshaking_b", FACES[:1], {"hard": [2]})]}
    with pytest.raises(InputDataError, match=r"gt_list\{2\}\{1\}: expected 1-based face indices in 1..1"):
        load_official_ground_truth(write_mats(tmp_path / "d", bad))

    folder = write_mats(tmp_path / "e", SCENE)
    scipy.io.savemat(str(folder / "wider_hard_val.mat"),
                     {"gt_list": cell([cell([np.ones((1, 1))])])})  # one event instead of two
    with pytest.raises(InputDataError, match="gt_list has 1 events, expected 2"):
        load_official_ground_truth(folder)


# ------------------------------------------------------------------------ independent brute-force reference

F32 = np.float32


def brute_force_ap(preds, gts, keeps, n_thr=1000):
    """Straight loops over images, predictions, faces and thresholds; float32 scalars for the IoU."""
    lo, hi = 1.0, 0.0
    for _boxes, scores in preds.values():
        for s in scores:
            lo, hi = min(lo, float(s)), max(hi, float(s))
    result = {}
    for setting, keep in keeps.items():
        n_faces = sum(len(keep[i]) for i in gts)
        tp_at = [0] * n_thr
        prop_at = [0] * n_thr
        for ident, gt in gts.items():
            boxes, scores = preds.get(ident, ([], []))
            if len(gt) == 0 or len(boxes) == 0:
                continue
            ranked = sorted(zip([(float(s) - lo) / (hi - lo) for s in scores], [list(b) for b in boxes]),
                            key=lambda item: -item[0])
            recalled = set()
            states = []  # (score, counts as a proposal, faces recalled so far)
            for score, (x1, y1, x2, y2) in ranked:
                x, y, w, h = x1, y1, x2 - x1, y2 - y1
                p = [F32(x), F32(y), F32(x + w), F32(y + h)]
                best, best_k = F32(-1), -1
                for k, (gx, gy, gw, gh) in enumerate(gt):
                    g = [F32(gx), F32(gy), F32(gx + gw), F32(gy + gh)]
                    iw = min(p[2], g[2]) - max(p[0], g[0]) + F32(1)
                    ih = min(p[3], g[3]) - max(p[1], g[1]) + F32(1)
                    ov = F32(0)
                    if iw > 0 and ih > 0:
                        union = (p[2] - p[0] + F32(1)) * (p[3] - p[1] + F32(1)) \
                            + (g[2] - g[0] + F32(1)) * (g[3] - g[1] + F32(1)) - iw * ih
                        ov = iw * ih / union
                    if ov > best:
                        best, best_k = ov, k
                proposal = True
                if best >= 0.5:
                    if best_k in set(int(v) for v in keep[ident]):
                        recalled.add(best_k)
                    else:
                        proposal = False
                states.append((score, proposal, len(recalled)))
            for t in range(n_thr):
                thr = 1 - (t + 1) / n_thr
                included = [st for st in states if st[0] >= thr]
                if included:
                    prop_at[t] += sum(1 for st in included if st[1])
                    tp_at[t] += included[-1][2]
        if n_faces == 0:
            result[setting] = -1.0
            continue
        rec = [0.0] + [tp / n_faces for tp in tp_at] + [1.0]
        pre = [0.0] + [(tp / p if p else 0.0) for tp, p in zip(tp_at, prop_at)] + [0.0]
        for i in range(len(pre) - 2, -1, -1):
            pre[i] = max(pre[i], pre[i + 1])
        result[setting] = sum((rec[i + 1] - rec[i]) * pre[i + 1]
                              for i in range(len(rec) - 1) if rec[i + 1] != rec[i])
    return result


def random_scene(rng):
    gts, preds, per_image = {}, {}, {}
    for i in range(int(rng.integers(3, 7))):
        ident = f"{i % 3}--Ev/img_{i}.jpg"
        n = int(rng.integers(0, 7))
        xy = rng.integers(0, 300, size=(n, 2))
        wh = rng.integers(0, 120, size=(n, 2))  # zero-size faces included
        faces = np.concatenate([xy, wh], axis=1).astype(float)
        if n >= 2 and rng.random() < 0.3:
            faces[1] = faces[0]  # duplicate GT
        gts[ident] = faces
        hard = sorted(rng.choice(n, size=int(rng.integers(0, n + 1)), replace=False).tolist()) if n else []
        medium = [k for k in hard if rng.random() < 0.7]
        easy = [k for k in medium if rng.random() < 0.6]
        per_image[ident] = {"easy": easy, "medium": medium, "hard": hard}
        if rng.random() < 0.15:
            continue  # no prediction entry
        m = int(rng.integers(0, 12))
        boxes = []
        for _ in range(m):
            if n and rng.random() < 0.7:
                g = xyxy(faces[rng.integers(n)])[0]
                boxes.append(g + rng.normal(0, rng.choice([0.0, 3.0, 15.0]), 4))
            else:
                x, y = rng.uniform(0, 350, 2)
                boxes.append([x, y, x + rng.uniform(1, 120), y + rng.uniform(1, 120)])
        scores = np.round(rng.uniform(-0.5, 2.0, m), int(rng.choice([2, 3, 6])))  # ties and shared grid steps
        preds[ident] = (np.array(boxes, float).reshape(-1, 4), scores)
    return preds, gts, keep_of(per_image)


@pytest.mark.parametrize("seed", range(12))
def test_matches_brute_force_on_random_scenes(seed):
    preds, gts, keep = random_scene(np.random.default_rng(seed))
    all_scores = np.concatenate([s for _, s in preds.values()] + [np.zeros(0)])
    if len(all_scores) and min(1.0, all_scores.min()) == max(0.0, all_scores.max()):
        pytest.skip("degenerate normalisation")
    got = official_ap(preds, gts, keep)
    want = brute_force_ap(preds, gts, keep)
    assert list(got) == list(want)
    for s in got:
        assert got[s] == pytest.approx(want[s], abs=1e-12), (s, got, want)


def test_mat_round_trip_matches_kernel(tmp_path):
    preds, gts, keep = random_scene(np.random.default_rng(100))
    scene: dict = {}
    for ident, faces in gts.items():
        event, name = ident.split("/")
        scene.setdefault(event, []).append(
            (name[:-4], faces, {s: [k + 1 for k in keep[s][ident].tolist()] for s in SETTINGS}))
    gt = load_official_ground_truth(write_mats(tmp_path, scene))
    assert set(gt.boxes_xywh) == set(gts)
    assert gt.evaluate(preds) == official_ap(preds, gts, keep)
