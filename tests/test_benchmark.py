"""The benchmark table's arithmetic (the measured run is in test_quantize.py, on the quantized toy)."""

import math

import pandas as pd

from ssh_toolkit.benchmark import COLUMNS, Timing, format_table, steady_rate


def test_steady_rate_counts_intervals_between_finished_images():
    assert steady_rate([10.0, 10.5, 11.0, 12.0]) == 1.5  # 3 images after the first, in 2 s
    assert math.isnan(steady_rate([3.0])) and math.isnan(steady_rate([]))
    assert Timing(4, 2.0, 0.1).s_per_img == 0.5 and math.isnan(Timing(1, math.nan, 0.1).s_per_img)


def test_format_table_rounds_and_marks_missing_figures():
    table = pd.DataFrame([["ir-int8", "INT8", "f32", 3, 57.07273, 0.50651, 0.04761, 21.0, 0.062, 4.0123],
                          ["ir-fp32", "FP32", "f32", 3, 57.0, math.nan, 0.2, 5.0, 0.2, 1.0]], columns=COLUMNS)
    text = format_table(table)
    assert "57.0727" in text and "+0.5065" in text and "4.01x" in text and "21.000" in text
    assert text.splitlines()[2].split()[5] == "-"  # the drop that could not be measured


def test_benchmark_refuses_a_report_dir_holding_an_evaluate_run_before_any_work(tmp_path, card):
    """Both were kind 'run': benchmark --report-dir <an evaluate run> replaced summary.json, detections.npz, ..."""
    import pytest

    from ssh_toolkit.benchmark import benchmark
    from ssh_toolkit.errors import UsageError
    from ssh_toolkit.fileio import atomic_dir
    from ssh_toolkit.workspace import Checkpoint, Workspace

    run = tmp_path / "run"
    with atomic_dir(run, kind="run") as tmp:
        (tmp / "summary.json").write_text("{}")
    ck = Checkpoint(tmp_path / "ck", "sshb", 0, "toy", "0" * 64)
    with pytest.raises(UsageError, match="is a run folder \\(evaluate\\) written by ssh-toolkit, not a benchmark"):
        benchmark(card, ck, [], tmp_path / "no-data", Workspace(tmp_path / "ws"), input_size=160, run_dir=run)
    assert (run / "summary.json").read_text() == "{}"
