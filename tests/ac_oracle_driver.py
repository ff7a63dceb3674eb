"""The Accuracy Checker (AC) as an oracle process, run by the Python of the legacy Model Optimizer environment
(openvino-dev 2023.3, which cannot share an environment with the OpenVINO 2026 runtime of the toolkit).

Started by tests/test_oracle_ac.py; it never imports ssh_toolkit. Requests and replies are npz archives, framed
by an 8-byte big-endian length, on stdin / the original stdout (everything the imports print goes to stderr).
Each archive holds the arrays plus ``__meta__``, a JSON string:

- ``{"op": "decode", "adapter": {...RetinaFaceAdapter config...}, "scale_x": .., "scale_y": ..}`` with one array
  per raw output -> ``boxes`` (N, 4: x_min, y_min, x_max, y_max as AC holds them) and ``scores``.
- ``{"op": "evaluate", "protocol": {...}, "ids": [...]}`` with ``b<i>``, ``s<i>``, ``g<i>`` per image -> ``ap``,
  ``tp``, ``fp`` and meta ``difficult`` (AC's ``difficult_boxes`` per image after its postprocessing).

Arrays cross as npz (dtype and bits preserved), so identical means identical.
"""

from __future__ import annotations

import io
import json
import os
import struct
import sys
import warnings

import numpy as np

META = {"label_map": {0: "__background__", 1: "face"}, "background_label": 0}


def _read(stream) -> bytes | None:
    head = stream.read(8)
    if len(head) < 8:
        return None
    (n,) = struct.unpack(">Q", head)
    return stream.read(n)


def _write(stream, arrays: dict, meta: dict) -> None:
    buf = io.BytesIO()
    np.savez(buf, __meta__=np.array(json.dumps(meta)), **arrays)
    data = buf.getvalue()
    stream.write(struct.pack(">Q", len(data)) + data)
    stream.flush()


class Oracle:
    def __init__(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import openvino.tools.accuracy_checker.adapters.retinaface as retinaface
            from openvino.tools.accuracy_checker.metrics.detection import DetectionMAP, bbox_match
            from openvino.tools.accuracy_checker.metrics.overlap import IOU
            from openvino.tools.accuracy_checker.postprocessor import PostprocessingExecutor
            from openvino.tools.accuracy_checker.representation import (
                DetectionAnnotation,
                DetectionPrediction,
            )
        self.retinaface, self.DetectionMAP, self.bbox_match, self.IOU = retinaface, DetectionMAP, bbox_match, IOU
        self.Post, self.Ann, self.Pred = PostprocessingExecutor, DetectionAnnotation, DetectionPrediction

    def decode(self, meta: dict, arrays: dict) -> tuple[dict, dict]:
        adapter = self.retinaface.RetinaFaceAdapter({"type": "retinaface", **meta["adapter"]})
        t = adapter.process([{k: v.copy() for k, v in arrays.items()}], ["img"],
                            [{"scale_x": meta["scale_x"], "scale_y": meta["scale_y"]}])[0]
        return {"boxes": np.stack([t.x_mins, t.y_mins, t.x_maxs, t.y_maxs], axis=1), "scores": t.scores}, {}

    def evaluate(self, meta: dict, arrays: dict) -> tuple[dict, dict]:
        p = meta["protocol"]
        images = [(i, arrays[f"b{k}"], arrays[f"s{k}"], arrays[f"g{k}"]) for k, i in enumerate(meta["ids"])]
        anns = [self.Ann(i, [1] * len(g), g[:, 0], g[:, 1], g[:, 2], g[:, 3]) for i, _, _, g in images]
        preds = [self.Pred(i, [1] * len(b), s, b[:, 0], b[:, 1], b[:, 2], b[:, 3]) for i, b, s, _ in images]
        lo, hi = p["height_range"]
        post = self.Post([
            {"type": "cast_to_int", "round_policy": p["round_policy"]},
            {"type": "clip_boxes", "size": int(p["clip_annotation"]), "apply_to": "annotation"},
            {"type": "filter", "apply_to": "annotation", "height_range": f"{lo:g}, {hi:g}", "is_empty": True},
        ], dataset_meta=META)
        anns, preds = post.process_batch(anns, preds)

        class _Dataset:
            metadata = META

        metric = self.DetectionMAP({"type": "map", "overlap_threshold": p["overlap_threshold"],
                                    "ignore_difficult": p["ignore_difficult"],
                                    "include_boundaries": p["include_boundaries"]}, _Dataset())
        ap = metric.evaluate(anns, preds)
        tp, fp, *_ = self.bbox_match(anns, preds, 1, self.IOU(p["include_boundaries"]), p["overlap_threshold"],
                                     p["ignore_difficult"], False, p["include_boundaries"], False)
        difficult = [sorted(int(x) for x in set(a.metadata.get("difficult_boxes", []))) for a in anns]
        return ({"ap": np.asarray(ap, np.float64), "tp": np.asarray(tp), "fp": np.asarray(fp)},
                {"difficult": difficult})


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")  # the protocol channel
    os.dup2(2, 1)  # anything printed by the imports or AC goes to stderr
    sys.stdout = sys.stderr
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")  # NaN / inf boxes are fed on purpose
    oracle = Oracle()
    _write(out, {}, {"ready": True, "python": sys.version.split()[0], "numpy": np.__version__})
    stdin = sys.stdin.buffer
    while (data := _read(stdin)) is not None:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k != "__meta__"}
            meta = json.loads(str(z["__meta__"]))
        try:
            result, extra = getattr(oracle, meta["op"])(meta, arrays)
            _write(out, result, {"ok": True, **extra})
        except Exception as e:  # reported to the test, which fails with it
            _write(out, {}, {"ok": False, "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
