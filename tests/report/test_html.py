"""The HTML report and run comparison on hand-made run folders (summary.json + the CSV tables)."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from ssh_toolkit.errors import InputDataError
from ssh_toolkit.metric.box_match import BoxMatch
from ssh_toolkit.report import html as html_report
from ssh_toolkit.report.html import (
    compare_runs,
    format_comparison,
    render_html,
    report_runs,
    write_html_report,
)
from ssh_toolkit.report.markdown import standin_banner
from ssh_toolkit.run_record import OutputParity, RunSummary

OUTPUTS = ("rpn_cls_prob_reshape_stride32", "rpn_bbox_pred_stride32", "rpn_cls_prob_reshape_stride16",
           "rpn_bbox_pred_stride16", "rpn_cls_prob_reshape_stride8", "rpn_bbox_pred_stride8")
PNG_SRC = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
MAX_ABS = {"ir-fp32": 3.1e-6, "ir-fp16": 1.6e-2}


def make_run(root, run_id="20251125-120000-toy", *, maps=None, irs=("ir-fp32", "ir-fp16"), weights="standin",
             kind="toy", input_size=640, tables=True):
    """A run folder as evaluate writes it; ``maps`` overrides mAP per model, ``irs=()`` is an MXNet-only run."""
    maps = maps or {"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp16": 71.180}
    models = ["mxnet", *irs]
    precision = {"mxnet": "FP32", "ir-fp32": "FP32", "ir-fp16": "FP16"}
    parity, det, parity_rows, hist_rows = {}, {}, [], []
    rng = np.random.default_rng(0)
    edges = np.logspace(-12, 4, 1601)
    for ir in irs:
        atol = 1e-3 if ir == "ir-fp32" else 0.5
        parity[ir] = {}
        for o in OUTPUTS:
            m = MAX_ABS[ir] * (1.0 if "bbox" in o else 0.5)
            parity[ir][o] = OutputParity(max_abs=m, min_passing_atol=m, atol=atol, cosine=0.9999995,
                                         min_cosine=0.999, passed=True)
            parity_rows.append({"reference": "mxnet", "test": ir, "precision": precision[ir], "output": o,
                                "shape": "1x4x20x20", "n_images": 50, "max_abs": m, "mean_abs": m / 40,
                                "median_abs": m / 60, "p99_abs": m / 4, "max_rel": 1e-3, "cosine": 0.9999995,
                                "psnr_db": 95.0, "min_passing_atol": m, "atol": atol, "rtol": 0.0,
                                "min_cosine": 0.999, "passed": True, "reason": ""})
            counts = np.histogram(np.abs(rng.normal(scale=m / 4, size=5000)), bins=np.concatenate([[0], edges]))[0]
            hist_rows.append({"model": ir, "output": o, "upper_edge": 0.0, "count": 12})
            hist_rows += [{"model": ir, "output": o, "upper_edge": e, "count": int(c)}
                          for e, c in zip(edges, counts) if c]
        det[ir] = BoxMatch(n_ref=400, n_test=401, matched=396, box_match_rate=0.99, only_ref=4, only_test=5,
                           mean_abs_score_diff=2e-4, max_abs_score_diff=3e-3, min_score=0.5, iou=0.9)
    summary = RunSummary(
        run_id=run_id, model="ssh-mxnet", map={m: maps[m] for m in models}, n_images=50, input_size=input_size,
        protocol="omz-ac-retinaface-wider", protocol_params={"nms_threshold": 0.3, "overlap_threshold": 0.5},
        weights=weights, checkpoint_kind=kind, note=standin_banner(weights, kind, 84.8), reference_map=84.8,
        dataset={"root": "/data/wider", "split": "val", "n_images": 50, "identifiers_sha256": "ab" * 32},
        precisions={m: precision[m] for m in models}, parity=parity, box_match=det,
        card_sha256="cd" * 32, versions={"python": "3.11.7", "openvino": "2023.3.0"},
        created="2025-11-25T12:00:00+00:00",
        runtime={"device": "CPU", "cpu": "AMD EPYC", "cpu_flags": ["avx512_bf16", "avx512_vnni"],
                 "default_exec_precision": "bf16"})
    d = root / run_id
    summary.save(d)
    if not tables:
        return d
    recall = np.linspace(0, 0.8, 200)
    pd.DataFrame([{"model": m, "recall": r, "precision": 1 - 0.4 * r ** 2} for m in models for r in recall]
                 ).to_csv(d / "pr_curves.csv", index=False)
    pd.DataFrame([{"model": m, "map_percent": maps[m], "ap": maps[m] / 100, "n_images": 50, "n_pos": 500,
                   "n_detections": 610, "n_tp": 420, "n_fp": 190} for m in models]).to_csv(d / "metrics.csv",
                                                                                            index=False)
    if irs:
        pd.DataFrame(parity_rows).to_csv(d / "parity.csv", index=False)
        pd.DataFrame(hist_rows).to_csv(d / "parity_histograms.csv", index=False)
        pd.DataFrame([{"model": ir, **vars(v)} for ir, v in det.items()]).to_csv(d / "box_match.csv", index=False)
    return d


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in PNG_SRC.findall(page)]


@pytest.fixture(scope="module")
def standin_page(tmp_path_factory):
    """One full stand-in run rendered once: the page and the matplotlib figures behind its images."""
    return _render([make_run(tmp_path_factory.mktemp("runs"))])


def test_single_run_page_is_self_contained_with_plots_banner_and_tables(standin_page):
    page, _ = standin_page
    pngs = _pngs(page)
    assert page.count('<img class="plot"') == 3 == len(pngs)  # mAP bars, PR curves, |diff| histograms
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") and len(p) > 5000 for p in pngs)
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    assert '<div class="banner"><strong>STAND-IN WEIGHTS</strong> (a toy detector' in page
    assert "They are NOT the accuracy of SSH" in page
    for text in ("<h2>Numeric parity (MXNet vs IR)</h2>",
                 "<h2>Box match rate (share of MXNet detections the IR reproduces)</h2>",
                 "<h2>Per-model metrics</h2>", "rpn_bbox_pred_stride8", "box_match_rate", "71.234", "n_detections",
                 "omz-ac-retinaface-wider", "openvino 2023.3.0"):
        assert text in page, text
    assert page.index('class="banner"') < page.index("<h2>Summary</h2>")


def _render(run_dirs):
    """(page, {alt text: matplotlib figure}) of ``run_dirs`` rendered as the report would."""
    figures = {}
    real_png = html_report._png

    def capture(fig, alt):
        figures[alt] = fig
        return real_png(fig, alt)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(html_report, "_png", capture)
        page = render_html(run_dirs)
    return page, figures


def _figures(run_dirs):
    return _render(run_dirs)[1]


def test_plots_have_log_axes_and_count_axis_and_no_reference_line_for_a_standin(standin_page):
    _, figs = standin_page
    bars = figs["mAP per model"].axes[0]
    assert bars.get_legend() is None  # one run, no reference line: nothing to explain
    assert not any(list(line.get_ydata()) == [84.8, 84.8] for line in bars.get_lines())
    hist_axes = [a for a in figs["histograms of absolute output differences"].axes if a.get_visible()]
    assert [a.get_title() for a in hist_axes] == list(OUTPUTS)
    assert all(a.get_xscale() == "log" for a in hist_axes)
    assert {a.get_ylabel() for a in hist_axes} == {"count"}


def test_published_reference_line_only_for_real_weights(tmp_path):
    bars = _figures([make_run(tmp_path, weights="real", kind="real", tables=False)])["mAP per model"].axes[0]
    assert [t.get_text() for t in bars.get_legend().get_texts()] == ["published 84.80 % (real weights)"]
    assert any(list(line.get_ydata()) == [84.8, 84.8] for line in bars.get_lines())
    # a comparison of a stand-in with a real run shows it (the real run is there), two stand-ins do not
    a, b = make_run(tmp_path, "a", tables=False), make_run(tmp_path, "b", tables=False)
    r = make_run(tmp_path, "r", weights="real", kind="real", tables=False)
    assert "published 84.80 % (real weights)" in [
        t.get_text() for t in _figures([a, r])["mAP per model"].axes[0].get_legend().get_texts()]
    assert [t.get_text() for t in _figures([a, b])["mAP per model"].axes[0].get_legend().get_texts()] == ["a", "b"]


def test_identical_pr_curves_are_one_line_named_for_each_model(standin_page):
    _, figs = standin_page  # make_run gives the three models the same curve
    pr = figs["precision-recall curves"].axes[0]
    assert [t.get_text() for t in pr.get_legend().get_texts()] == [
        "mxnet = ir-fp32 = ir-fp16 (identical curves), mAP 71.23 %"]
    assert len(pr.get_lines()) == 1


def test_pr_curve_starts_at_the_first_detection_and_distinct_curves_have_distinct_styles(tmp_path):
    d = make_run(tmp_path)
    rows = []
    for m, shift in (("mxnet", 0.0), ("ir-fp32", 0.0), ("ir-fp16", 0.01)):
        # two leading detections before the first face is recalled: an ignored face (precision undefined -> 0)
        # and a false positive, both at recall 0 and precision 0
        rows += [{"model": m, "recall": 0.0, "precision": 0.0}, {"model": m, "recall": 0.0, "precision": 0.0}]
        rows += [{"model": m, "recall": r, "precision": 1 / 3 + 0.5 * (1 - r) - shift}
                 for r in np.linspace(0.1, 0.8, 8)]
    pd.DataFrame(rows).to_csv(d / "pr_curves.csv", index=False)
    pr = _figures([d])["precision-recall curves"].axes[0]
    lines = pr.get_lines()
    assert [t.get_text() for t in pr.get_legend().get_texts()] == [
        "mxnet = ir-fp32 (identical curves), mAP 71.23 %", "ir-fp16, mAP 71.18 %"]
    for line in lines:
        assert line.get_xdata()[0] == pytest.approx(0.1)  # the first detection that recalls a face
        assert min(line.get_ydata()) > 0.3  # never drawn down to precision 0
    assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == len(lines) == 2


def test_mxnet_only_run_and_missing_tables_are_handled(tmp_path):
    page = render_html([make_run(tmp_path, irs=())])
    assert len(_pngs(page)) == 2  # no histograms without parity
    assert "No numeric parity in this run" in page and "No box match rate in this run" in page
    bare = render_html([make_run(tmp_path / "bare", tables=False)])
    assert len(_pngs(bare)) == 1  # only the mAP bar chart (from summary.json)
    assert "No precision-recall curves in this run" in bare and "metrics.csv missing" in bare
    # parity then comes from summary.json
    assert "rpn_bbox_pred_stride8" in bare and "No |difference| histograms" in bare


def test_unreadable_table_is_reported_not_fatal(tmp_path):
    d = make_run(tmp_path, irs=())
    (d / "pr_curves.csv").write_bytes(b"model,recall\n\xff\xfe\x00bad\n")
    (d / "metrics.csv").write_text("")
    page = render_html([d])
    assert "pr_curves.csv: could not be read" in page and "metrics.csv missing" in page
    (d / "pr_curves.csv").write_text("model,recall\nmxnet,0.5\n")
    assert "pr_curves.csv: not used, column(s) precision missing" in render_html([d])


def test_real_weights_have_no_banner(tmp_path):
    page = render_html([make_run(tmp_path, weights="real", kind="real", tables=False)])
    assert 'class="banner"' not in page and "STAND-IN" not in page


def test_write_html_report_and_missing_run(tmp_path):
    d = make_run(tmp_path, tables=False)
    path = write_html_report(d)
    assert path == d / "report.html" and path.read_text().startswith("<!DOCTYPE html>")
    with pytest.raises(InputDataError, match="run folder not found"):
        render_html([tmp_path / "nope"])


def test_compare_two_runs_gives_deltas(tmp_path):
    a = make_run(tmp_path, "run-a")
    b = make_run(tmp_path, "run-b", maps={"mxnet": 71.534, "ir-fp32": 71.530, "ir-fp16": 71.100}, input_size=320)
    df = compare_runs([a, b])
    assert list(df.columns) == ["run-a", "run-b", "delta"]
    assert df.index[:7].tolist() == ["weights", "checkpoint_kind", "input_size", "n_images", "dataset", "protocol",
                                     "created"]
    assert df.loc["map[mxnet]", "delta"] == pytest.approx(0.3)
    assert df.loc["map[ir-fp16]", "delta"] == pytest.approx(-0.08)
    assert df.loc["ir_vs_mxnet_drop[ir-fp16]", "run-a"] == pytest.approx(0.054)
    assert df.loc["ir_vs_mxnet_drop[ir-fp16]", "delta"] == pytest.approx(0.38)
    assert df.loc["input_size", "delta"] == -320
    assert df.loc["weights", "delta"] == "" and df.loc["n_images", "delta"] == 0
    assert df.loc["parity_max_abs[ir-fp16]", "run-b"] == pytest.approx(1.6e-2)
    assert df.loc["box_match_rate[ir-fp32]", "delta"] == pytest.approx(0.0)
    assert df.loc["version[openvino]", "run-a"] == "2023.3.0"
    text = format_comparison(df)
    assert text.loc["map[mxnet]"].tolist() == ["71.234", "71.534", "+0.300"]
    assert text.loc["parity_max_abs[ir-fp32]"].tolist() == ["3.100e-06", "3.100e-06", "+0.000e+00"]
    assert text.loc["parity_min_cosine[ir-fp16]", "run-a"] == "0.999999500"
    assert text.loc["input_size"].tolist() == ["640", "320", "-320"]
    assert "box_match_rate[ir-fp16]" in text.to_string()


def test_compare_with_a_missing_model_and_three_runs(tmp_path):
    a = make_run(tmp_path, "run-a")
    b = make_run(tmp_path, "run-b", irs=())
    df = compare_runs([a, b])
    assert df.loc["map[ir-fp16]", "run-b"] is None and df.loc["map[ir-fp16]", "delta"] == ""
    c = make_run(tmp_path, "run-c", weights="real", kind="real")
    df3 = compare_runs([a, b, c])
    assert list(df3.columns) == ["run-a", "run-b", "run-c"]
    assert df3.loc["weights"].tolist() == ["standin", "standin", "real"]


def test_report_runs_writes_single_and_comparison_pages(tmp_path):
    a = make_run(tmp_path / "runs", "run-a")
    df, path = report_runs([a])
    assert path == a / "report.html" and list(df.columns) == ["run-a"]
    b = make_run(tmp_path / "runs", "run-b", maps={"mxnet": 70.0}, irs=(), input_size=320)
    df, path = report_runs([a, b])
    assert path == (tmp_path / "runs" / "compare-run-a-vs-run-b.html").resolve()
    page = path.read_text()
    assert "delta" in df.columns and "<h2>Side by side</h2>" in page
    assert "run-a and run-b are not directly comparable: input_size 640 vs 320." in page
    assert page.count('<div class="banner"><strong>run-') == 2
    assert len(_pngs(page)) == 3  # mAP, PR, run-a's |diff| histograms (run-b has no parity)
    assert "http://" not in page and "https://" not in page
    assert page.count("<details>") == 2
    out = tmp_path / "cmp.html"
    assert report_runs([a, b], out)[1] == out and out.is_file()


def test_the_page_names_the_cpu_its_flags_and_the_runtime_default(standin_page):
    page, _ = standin_page
    assert ("CPU on AMD EPYC; flags that change results: avx512_bf16, avx512_vnni; default precision of an unpinned "
            "FP32 IR: bf16") in page
    assert "openvino 2023.3.0" in page


def test_a_file_the_toolkit_did_not_write_is_never_overwritten(tmp_path):
    """Review finding 3: `report RUN --out notes.html` overwrote any file; --out a folder was exit 3."""
    import shutil

    from ssh_toolkit.errors import UsageError
    from ssh_toolkit.fileio import atomic_dir

    a = make_run(tmp_path / "runs", "run-a", tables=False)  # no plots: quick pages
    notes = tmp_path / "notes.html"
    notes.write_text("<html>my notes</html>")
    with pytest.raises(UsageError) as info:
        report_runs([a], notes)
    assert str(info.value) == (f"{notes}: exists and is not a report written by ssh-toolkit; not overwritten: "
                               f"choose another --out file or move it away")
    with pytest.raises(UsageError, match="notes.html: exists and is not a report written by ssh-toolkit"):
        html_report.write_html_report(a, notes)
    assert notes.read_text() == "<html>my notes</html>"
    with pytest.raises(UsageError, match=r"runs: is a folder; --out expects the path of an HTML file"):
        report_runs([a], tmp_path / "runs")

    out = tmp_path / "page.html"
    report_runs([a], out)
    assert '<meta name="generator" content="ssh-toolkit">' in out.read_text()
    out.write_text(out.read_text().replace("run-a", "stale"))
    report_runs([a], out)  # a page the toolkit wrote is replaced
    assert "stale" not in out.read_text()

    older = tmp_path / "older"  # a run folder with a page of an older toolkit (no generator mark), in its marker
    with atomic_dir(older, kind="run") as tmp:
        shutil.copytree(a, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("report.html"))
        (tmp / "report.html").write_text("<html>older page</html>")
    assert report_runs([older])[1] == older / "report.html"
    assert "generator" in (older / "report.html").read_text()


@pytest.mark.slow  # renders a whole page (> 0.5 s)
def test_both_routes_and_their_variants_fit_in_the_charts(tmp_path):
    """Nine models (MXNet, both routes' IRs, each also at bf16): the mAP bars' model names do not overlap, and
    the precision-recall legend naming all of them stays inside the figure (it ran off the right edge, and
    matplotlib gave up the layout)."""
    import json
    import warnings

    d = make_run(tmp_path)
    names = ["mxnet", *(f"ir-{r}fp{b}{e}" for r in ("", "native-") for b in ("32", "16") for e in ("", "@bf16"))]
    s = json.loads((d / "summary.json").read_text())
    s["map"] = {m: 71.234 for m in names}
    s["precisions"] = {m: "FP16" if "fp16" in m else "FP32" for m in names}
    (d / "summary.json").write_text(json.dumps(s))
    recall = np.linspace(0, 0.8, 50)
    pd.DataFrame([{"model": m, "recall": r, "precision": 1 - 0.4 * r ** 2} for m in names for r in recall]
                 ).to_csv(d / "pr_curves.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "constrained_layout not applied because axes sizes collapsed to zero"
        page, figs = _render([d])
    bars = figs["mAP per model"]
    renderer = bars.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in bars.axes[0].get_xticklabels()]
    assert [t.get_text() for t in bars.axes[0].get_xticklabels()] == names
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
    pr = figs["precision-recall curves"]
    legend = pr.axes[0].get_legend()
    assert " = ".join(names) in legend.get_texts()[0].get_text().replace("\n", " ")
    assert pr.bbox.contains(*legend.get_window_extent(pr.canvas.get_renderer()).p1)
