import math

import numpy as np
import pytest

from ssh_toolkit.card import Tolerance
from ssh_toolkit.errors import BackendError
from ssh_toolkit.metric.parity import DiffAccumulator, ParityAccumulator, compare_outputs
from ssh_toolkit.model.outputs import RawOutputs


def _raw(card, runner, rng=None, scale=0.0, base=None):
    rng = rng or np.random.default_rng(0)
    base = base or {n: rng.normal(size=(1, 4, 3, 3)).astype(np.float32) for n in card.output_names}
    noisy = {n: a + scale * rng.normal(size=a.shape).astype(np.float32) for n, a in base.items()}
    return RawOutputs(noisy, runner), base


def test_statistics_match_independent_numpy():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(1, 8, 10, 10)).astype(np.float32)
    test = ref + rng.normal(scale=1e-3, size=ref.shape).astype(np.float32)
    tol = Tolerance(atol=1e-2, rtol=0.1, min_cosine=0.999)
    d = DiffAccumulator("x", rtol=0.1).update(ref, test).compute(tol)
    r, t = ref.astype(np.float64).ravel(), test.astype(np.float64).ravel()
    diff = np.abs(t - r)
    assert d.max_abs == pytest.approx(diff.max(), rel=1e-12)
    assert d.mean_abs == pytest.approx(diff.mean(), rel=1e-12)
    assert d.cosine == pytest.approx(r @ t / np.sqrt((r @ r) * (t @ t)), rel=1e-12)
    assert d.psnr_db == pytest.approx(10 * np.log10((r.max() - r.min()) ** 2 / np.mean(diff ** 2)), rel=1e-12)
    assert d.min_passing_atol == pytest.approx(max(0, (diff - 0.1 * np.abs(r)).max()), rel=1e-12)
    big = np.abs(r) >= 1e-3
    assert d.max_rel == pytest.approx((diff[big] / np.abs(r[big])).max(), rel=1e-12)
    # quantiles come from a log histogram: never below the exact value and within 2.3 % above it
    for q, got in ((0.5, d.median_abs), (0.99, d.p99_abs)):
        exact = np.quantile(diff, q, method="inverted_cdf")
        assert exact <= got <= exact * 1.024
    assert d.passed


def test_accumulating_images_equals_one_big_update():
    rng = np.random.default_rng(4)
    refs = [rng.normal(size=(4, 5)) for _ in range(3)]
    tests = [r + rng.normal(scale=1e-2, size=r.shape) for r in refs]
    tol = Tolerance(1.0, 0.0, 0.0)
    acc = DiffAccumulator("x", 0.0)
    for r, t in zip(refs, tests):
        acc.update(r, t)
    one = DiffAccumulator("x", 0.0).update(np.concatenate(refs), np.concatenate(tests)).compute(tol)
    many = acc.compute(tol)
    for f in ("max_abs", "mean_abs", "cosine", "psnr_db", "median_abs", "p99_abs", "min_passing_atol"):
        assert getattr(many, f) == pytest.approx(getattr(one, f), rel=1e-12), f


def test_verdicts_fail_on_atol_cosine_shape_and_nan():
    ref = np.linspace(-1, 1, 100)
    ok = DiffAccumulator("x", 0).update(ref, ref + 1e-4).compute(Tolerance(1e-3, 0, 0.99))
    assert ok.passed and ok.verdict_line().startswith("PASS | x | max_abs=1.000e-04")
    too_far = DiffAccumulator("x", 0).update(ref, ref + 2e-3).compute(Tolerance(1e-3, 0, 0.99))
    assert not too_far.passed and too_far.min_passing_atol == pytest.approx(2e-3)
    assert too_far.verdict_line().startswith("FAIL | x |")
    flipped = DiffAccumulator("x", 0).update(ref, -ref).compute(Tolerance(10, 0, 0.99))
    assert not flipped.passed and flipped.cosine == pytest.approx(-1)
    shape = DiffAccumulator("x", 0).update(ref, ref[:50]).compute(Tolerance(1, 0, 0))
    assert not shape.passed and "shape mismatch" in shape.reason
    nan = DiffAccumulator("x", 0).update(ref, np.full_like(ref, np.nan)).compute(Tolerance(1, 0, 0))
    assert not nan.passed and "non-finite" in nan.reason
    empty = DiffAccumulator("x", 0).compute(Tolerance(1, 0, 0))
    assert not empty.passed and empty.reason == "no values compared"


def test_the_reason_names_every_failed_criterion_with_the_amount():
    ref = np.linspace(-1, 1, 100)
    assert DiffAccumulator("x", 0).update(ref, ref + 1e-4).compute(Tolerance(1e-3, 0, 0.99)).reason == ""
    too_far = DiffAccumulator("x", 0).update(ref, ref + 2e-3).compute(Tolerance(1e-3, 0, 0.99))
    assert too_far.reason == "needs atol 2.000e-03 > 1.0e-03, exceeds it by 1.000e-03 (max_abs 2.000e-03, rtol 0)"
    flipped = DiffAccumulator("x", 0).update(ref, -ref).compute(Tolerance(10, 0, 0.99))
    assert flipped.reason == "cosine -1.000000000 < 0.99, short by 1.990e+00"
    both = DiffAccumulator("x", 0).update(ref, -ref).compute(Tolerance(1, 0, 0.99))
    assert both.reason == ("needs atol 2.000e+00 > 1.0e+00, exceeds it by 1.000e+00 (max_abs 2.000e+00, rtol 0); "
                           "cosine -1.000000000 < 0.99, short by 1.990e+00")
    assert both.verdict_line() == f"FAIL | x | {both.reason}"
    shape = DiffAccumulator("x", 0).update(ref, ref[:50]).compute(Tolerance(1, 0, 0))
    assert shape.reason == "shape mismatch: reference (100,) vs test (50,)"


def test_identical_outputs_have_infinite_psnr_and_unit_cosine():
    ref = np.arange(10.0)
    d = DiffAccumulator("x", 0).update(ref, ref.copy()).compute(Tolerance(0, 0, 1.0))
    assert d.passed and d.max_abs == 0 and d.cosine == 1.0 and math.isinf(d.psnr_db)


def test_compare_outputs_walks_the_card_and_uses_per_precision_tolerances(card):
    ref, base = _raw(card, "mxnet")
    close, _ = _raw(card, "ir-fp32", np.random.default_rng(9), scale=1e-5, base=base)
    res = compare_outputs(ref, close, card, "FP32")
    assert bool(res) and [d.name for d in res.diffs] == list(card.output_names)
    far, _ = _raw(card, "ir-fp32", np.random.default_rng(9), scale=2e-3, base=base)
    res32 = compare_outputs(ref, far, card, "FP32")
    assert not res32 and res32.failed == list(card.output_names)
    assert bool(compare_outputs(ref, far, card, "FP16"))  # looser FP16 tolerances
    frame = res32.to_frame()
    assert list(frame["output"]) == list(card.output_names) and not frame["passed"].any()


def test_missing_output_is_an_error_not_a_skip(card):
    ref, base = _raw(card, "mxnet")
    partial = RawOutputs({k: v for k, v in base.items() if "stride8" not in k}, "ir-fp32")
    with pytest.raises(BackendError, match="ir-fp32: output 'rpn_cls_prob_reshape_stride8' missing"):
        ParityAccumulator(card, "FP32").update(ref, partial)
