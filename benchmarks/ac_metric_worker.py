"""The Accuracy Checker's metric, timed where it lives: run by the Python of the legacy Model Optimizer
environment (openvino-dev 2023.3) for bench_evaluate.py. It never imports ssh_toolkit.

    <legacy python> ac_metric_worker.py IMAGES.npz PROTOCOL_JSON   ->  {"seconds": .., "ap": ..} on stdout

IMAGES.npz holds ``ids`` and per image k ``b<k>`` (N, 4) boxes, ``s<k>`` (N,) scores, ``g<k>`` (G, 4) ground truth.
Only AC's postprocessing (cast_to_int, clip_boxes, filter) and DetectionMAP are timed, as Open Model Zoo's
ssh-mxnet configures them.
"""

import json
import sys
import time
import warnings

import numpy as np

META = {"label_map": {0: "__background__", 1: "face"}, "background_label": 0}


def main() -> None:
    data, p = np.load(sys.argv[1]), json.loads(sys.argv[2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from openvino.tools.accuracy_checker.metrics.detection import DetectionMAP
        from openvino.tools.accuracy_checker.postprocessor import PostprocessingExecutor
        from openvino.tools.accuracy_checker.representation import DetectionAnnotation, DetectionPrediction
    anns, preds = [], []
    for k, i in enumerate(data["ids"].tolist()):
        b, s, g = data[f"b{k}"], data[f"s{k}"], data[f"g{k}"]
        anns.append(DetectionAnnotation(i, [1] * len(g), *(g[:, c].copy() for c in range(4))))
        preds.append(DetectionPrediction(i, [1] * len(b), s.copy(), *(b[:, c].copy() for c in range(4))))

    class _Dataset:
        metadata = META

    lo, hi = p["height_range"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        post = PostprocessingExecutor([
            {"type": "cast_to_int", "round_policy": p["round_policy"]},
            {"type": "clip_boxes", "size": int(p["clip_annotation"]), "apply_to": "annotation"},
            {"type": "filter", "apply_to": "annotation", "height_range": f"{lo:g}, {hi:g}", "is_empty": True},
        ], dataset_meta=META)
        anns, preds = post.process_batch(anns, preds)
        metric = DetectionMAP({"type": "map", "overlap_threshold": p["overlap_threshold"],
                               "ignore_difficult": p["ignore_difficult"],
                               "include_boundaries": p["include_boundaries"]}, _Dataset())
        ap = metric.evaluate(anns, preds)
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "ap": float(np.asarray(ap).reshape(-1)[0])}))


if __name__ == "__main__":
    main()
