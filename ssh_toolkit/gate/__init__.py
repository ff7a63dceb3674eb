"""The regression gate: rules (``rules``), the baseline file (``baseline``) and results (``result``)."""

from .baseline import BASELINE_FORMAT, Baseline, check_comparable, comparability_differences, write_baseline
from .result import IN_RUN_RULES, Check, GateResult, write_step_summary
from .rules import check_gate, gate_run

__all__ = ["BASELINE_FORMAT", "IN_RUN_RULES", "Baseline", "Check", "GateResult", "check_comparable", "check_gate",
           "comparability_differences", "gate_run", "write_baseline", "write_step_summary"]
