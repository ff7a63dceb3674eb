"""Gate results: verdict lines, Markdown and the GitHub Actions step summary."""

from __future__ import annotations

from gate.records import make_summary

from ssh_toolkit.gate import Baseline, check_gate, write_step_summary


def test_markdown_and_frame_list_every_rule(card):
    base = Baseline.from_run(make_summary(map={"mxnet": 71.234, "ir-fp32": 71.231, "ir-fp16": 71.300}))
    r = check_gate(make_summary(), base, card, "b.json")
    md = r.markdown()
    assert md.startswith("### ssh-toolkit gate: FAIL")
    assert "> **STAND-IN WEIGHTS**" in md
    assert "| verdict | rule | value | limit | baseline | detail |" in md
    assert ("| **FAIL** | map_vs_baseline[ir-fp16] | 71.180 | >= 71.250 | 71.300 | mAP 71.180 vs baseline 71.300: "
            "dropped 0.120 points, 0.070 more than the 0.050 allowed |") in md
    assert "| SKIP | map_vs_reference[mxnet] | 71.234 | 84.800 ± 0.100 | 84.800 |" in md
    assert md.count("\n| ") == len(r.checks) + 1
    df = r.to_frame()
    assert len(df) == len(r.checks) and (df["verdict"] == "FAIL").sum() == 1
    assert set(df["rule"]) == {"map_vs_baseline", "map_vs_reference", "ir_vs_mxnet_drop", "parity",
                               "box_match_rate"}


def test_step_summary_appended_only_when_set(monkeypatch, tmp_path):
    target = tmp_path / "summary.md"
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert write_step_summary("# one") is None and not target.exists()
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(target))
    target.write_text("earlier step\n")
    assert write_step_summary("# one") == target
    write_step_summary("# two\n")
    assert target.read_text() == "earlier step\n# one\n# two\n"
