"""Gate results: one ``Check`` per rule and subject, a ``GateResult`` with its verdict, text lines and Markdown,
and the GitHub Actions step summary they are appended to.

Usage::

    for line in result.lines():
        print(line)                # PASS | map_vs_baseline[mxnet] | mAP 57.070 vs baseline 57.073: ...
    if not result:                 # bool(result) == every check passed (skipped checks do not fail)
        result.raise_for_failure() # GateFailure -> exit code 1
    write_step_summary(result.markdown())
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import EnvironmentProblem, GateFailure

# Rules that only look at the run itself: a baseline is never recorded from a run that fails one of them.
IN_RUN_RULES = ("ir_vs_mxnet_drop", "parity", "box_match_rate")
_FORMATS = {"map_vs_baseline": ".3f", "map_vs_reference": ".3f", "ir_vs_mxnet_drop": ".3f", "parity": ".3e",
            "box_match_rate": ".4f"}
_VERDICT = {True: "PASS", False: "FAIL", None: "SKIP"}


@dataclass(frozen=True)
class Check:
    """One rule applied to one model / output.

    ``passed`` is True, False, or None for a check that was skipped (not applicable, e.g. the reference mAP with
    stand-in weights); a skip never counts as a pass nor as a failure. ``op`` says how ``value`` is held against
    ``limit``: "<=", ">=", or "±" (``|value - baseline| <= limit``). ``baseline`` is the value compared with
    (the baseline's, or the published reference for map_vs_reference), when there is one.
    """

    name: str  # rule[subject], e.g. parity[ir-fp16/rpn_bbox_pred_stride8]
    value: float | None
    limit: float | None
    baseline: float | None
    passed: bool | None
    detail: str
    op: str = "<="

    @property
    def rule(self) -> str:
        return self.name.split("[", 1)[0]

    @property
    def subject(self) -> str:
        return self.name.split("[", 1)[1].rstrip("]") if "[" in self.name else ""

    @property
    def status(self) -> str:
        return _VERDICT[self.passed]

    @property
    def in_run(self) -> bool:
        return self.rule in IN_RUN_RULES

    def _fmt(self, v: float | None) -> str:
        if v is None:
            return ""
        if not math.isfinite(v):
            return str(v)
        return format(v, _FORMATS.get(self.rule, ".6g"))

    @property
    def value_text(self) -> str:
        return self._fmt(self.value)

    @property
    def limit_text(self) -> str:
        if self.limit is None:
            return ""
        if self.op == "±":
            return f"{self._fmt(self.baseline)} ± {self._fmt(self.limit)}"
        return f"{self.op} {self._fmt(self.limit)}"

    def line(self) -> str:
        return f"{self.status} | {self.name} | {self.detail}"


@dataclass(frozen=True)
class GateResult:
    """Every check of one gate run; truthy iff no check failed (skipped checks do not fail)."""

    run_id: str
    model: str
    weights: str
    note: str  # the run's stand-in banner
    baseline: str  # where the baseline came from ("" when none was given)
    checks: tuple[Check, ...]
    notes: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()  # what to run next about a failure (the localize command of a failed parity rule)

    def __bool__(self) -> bool:
        return not self.failed

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.passed is False]

    @property
    def skipped(self) -> list[Check]:
        return [c for c in self.checks if c.passed is None]

    @property
    def failed_in_run(self) -> list[Check]:
        return [c for c in self.failed if c.in_run]

    def verdict(self) -> str:
        """One line: ``gate PASS: 31 checks passed, 3 skipped`` / ``gate FAIL: 2 of 34 checks failed (...)``."""
        n, f, s = len(self.checks), self.failed, self.skipped
        skipped = f", {len(s)} skipped" if s else ""
        standin = "; stand-in weights" if self.weights != "real" else ""
        if not f:
            return f"gate PASS: {n - len(s)} checks passed{skipped}{standin}"
        names = ", ".join(c.name for c in f[:5]) + (f" and {len(f) - 5} more" if len(f) > 5 else "")
        return f"gate FAIL: {len(f)} of {n} checks failed ({names}){skipped}{standin}"

    def lines(self) -> list[str]:
        """``PASS | rule[subject] | detail`` for every check, in rule order."""
        return [c.line() for c in self.checks]

    def raise_for_failure(self) -> None:
        if not self:
            raise GateFailure(f"run {self.run_id}: {self.verdict()}")

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{
            "verdict": c.status, "rule": c.rule, "subject": c.subject, "name": c.name, "value": c.value,
            "op": c.op, "limit": c.limit, "baseline": c.baseline, "detail": c.detail,
        } for c in self.checks], columns=["verdict", "rule", "subject", "name", "value", "op", "limit",
                                          "baseline", "detail"])

    def markdown(self) -> str:
        """Heading, stand-in banner, notes and a table of every rule with value, limit and verdict."""
        head = "PASS" if self else "FAIL"
        against = f" against baseline `{self.baseline}`" if self.baseline else " (no baseline)"
        out = [f"### ssh-toolkit gate: {head}", "", f"Run `{self.run_id}` ({self.model}){against}: "
               f"{self.verdict()}.", ""]
        if self.weights != "real" and self.note:
            out += [f"> {self.note}", ""]
        for n in self.notes:
            out += [f"- {n}"]
        if self.notes:
            out.append("")
        out += ["| verdict | rule | value | limit | baseline | detail |", "|---|---|---|---|---|---|"]
        for c in self.checks:
            cells = [f"**{c.status}**" if c.passed is False else c.status, c.name, c.value_text, c.limit_text,
                     c._fmt(c.baseline), c.detail]
            out.append("| " + " | ".join(s.replace("|", "\\|") for s in cells) + " |")
        return "\n".join(out) + "\n"



def localize_hints(checks: Sequence[Check], checkpoint_kind: str, input_size: int, data_root: str | None,
                   card_args: Sequence[str] = (), workspace: str | None = None) -> tuple[str, ...]:
    """For each IR with a failed parity rule: the ``ssh-toolkit localize`` command that finds the first layer
    where it parts from MXNet (on the run's first image), in the run's ``workspace`` when it is known."""
    import shlex

    models = dict.fromkeys(c.subject.split("/", 1)[0] for c in checks if c.rule == "parity" and c.passed is False)
    where = f"--data-root {shlex.quote(data_root)} --index 0" if data_root else "--image <one of the run's images>"
    args = [*(("--workspace", workspace) if workspace else ()), *card_args]
    return tuple(f"hint: to find the first layer where {m} parts from mxnet, run: ssh-toolkit localize --model "
                 f"{shlex.quote(m)} --weights {checkpoint_kind} --input-size {input_size} {where}"
                 + "".join(f" {shlex.quote(a)}" for a in args) for m in models)


def write_step_summary(markdown: str) -> Path | None:
    """Append ``markdown`` to the file named by ``$GITHUB_STEP_SUMMARY`` (GitHub Actions); no-op when unset."""
    target = os.environ.get("GITHUB_STEP_SUMMARY", "").strip()
    if not target:
        return None
    path = Path(target)
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(markdown if markdown.endswith("\n") else markdown + "\n")
    except OSError as e:
        raise EnvironmentProblem(f"$GITHUB_STEP_SUMMARY={target}: cannot append the gate summary ({e})") from None
    return path
