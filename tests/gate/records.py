"""Hand-made run records for the gate tests: a stand-in (toy) run of 50 images with MXNet and both IRs."""

from __future__ import annotations

import dataclasses

from ssh_toolkit.metric.box_match import BoxMatch
from ssh_toolkit.report.markdown import standin_banner
from ssh_toolkit.run_record import OutputParity, RunSummary

OUTPUTS = ("rpn_cls_prob_reshape_stride32", "rpn_bbox_pred_stride32", "rpn_cls_prob_reshape_stride16",
           "rpn_bbox_pred_stride16", "rpn_cls_prob_reshape_stride8", "rpn_bbox_pred_stride8")
PROTOCOL = {"name": "omz-ac-retinaface-wider", "keep_top_k": 1000, "nms_threshold": 0.3,
            "include_boundaries": True, "round_policy": "nearest", "clip_annotation": 1024.0,
            "height_range": (64.0, 1024.0), "filter_empty": True, "overlap_threshold": 0.5,
            "ignore_difficult": True}


def _parity(precision: str, **override) -> dict[str, OutputParity]:
    out = {}
    for name in OUTPUTS:
        # Judged under the embedded card's tolerances (FP32 atol 1e-3; FP16 scores 0.01, deltas 0.05).
        if precision == "FP32":
            p = OutputParity(max_abs=3.1e-6, min_passing_atol=3.1e-6, atol=1e-3, cosine=0.9999999998,
                             min_cosine=0.99999, passed=True, rtol=0.0)
        elif "cls" in name:
            p = OutputParity(max_abs=2.4e-3, min_passing_atol=2.4e-3, atol=0.01, cosine=0.99999, min_cosine=0.9999,
                             passed=True, rtol=0.0)
        else:
            p = OutputParity(max_abs=1.6e-2, min_passing_atol=1.6e-2, atol=0.05, cosine=0.99998,
                             min_cosine=0.9999, passed=True, rtol=0.0)
        out[name] = dataclasses.replace(p, **override.get(name, {}))
    return out


def _det(n_ref: int, matched: int) -> BoxMatch:
    return BoxMatch(n_ref=n_ref, n_test=n_ref + 1, matched=matched, box_match_rate=matched / n_ref,
                    only_ref=n_ref - matched, only_test=n_ref + 1 - matched, mean_abs_score_diff=2e-4,
                    max_abs_score_diff=3e-3, min_score=0.5, iou=0.9)


def make_summary(**kw) -> RunSummary:
    """A stand-in (toy) run of 50 images at 640 with MXNet and both IRs, everything passing."""
    base = dict(
        run_id="20251125-120000-toy", model="ssh-mxnet",
        map={"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp16": 71.180}, n_images=50, input_size=640,
        protocol="omz-ac-retinaface-wider", protocol_params=PROTOCOL, weights="standin", checkpoint_kind="toy",
        note=standin_banner("standin", "toy", 84.8), reference_map=84.8,
        dataset={"root": "/data/wider-sample", "split": "val", "n_images": 50, "identifiers_sha256": "ab" * 32,
                 "skipped": 0},
        precisions={"mxnet": "FP32", "ir-fp32": "FP32", "ir-fp16": "FP16"},
        parity={"ir-fp32": _parity("FP32"), "ir-fp16": _parity("FP16")},
        box_match={"ir-fp32": _det(400, 400), "ir-fp16": _det(400, 392)},
        card_sha256="cd" * 32, versions={"python": "3.11.7", "openvino": "2023.3.0"},
        created="2025-11-25T12:00:00+00:00",
    )
    base.update(kw)
    return RunSummary(**base)


def _line(result, name: str) -> str:
    found = [ln for ln in result.lines() if ln.split(" | ")[1] == name]
    assert len(found) == 1, (name, result.lines())
    return found[0]
