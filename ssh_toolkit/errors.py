"""Exception hierarchy and the one exit-code table of the toolkit.

Every error a user can cause or fix derives from :class:`ToolkitError` and carries a
one-line message naming the file or stage and what is wrong. ``cli.main`` turns it into
that line on stderr and the exit code below; anything else is a bug and keeps its traceback.

Exit codes:
    0  success
    1  a gate or parity check found a regression (GateFailure)
    2  usage or input error: bad option, bad pipeline file, missing/corrupt file,
       size or sha256 mismatch (UsageError, CardError, InputDataError)
    3  environment error: a missing dependency, Model Optimizer or a runtime failed
       (EnvironmentProblem, ConversionError, BackendError)
  130  interrupted (Ctrl-C, SIGINT); finished work is kept and the same command resumes
  143  terminated (SIGTERM, e.g. a CI timeout or ``kill``): handled like Ctrl-C, with the shell's 128 + 15
(both: one line on stderr, whenever the signal arrives; see ``interrupts.py``)
"""

from __future__ import annotations

EXIT_REGRESSION = 1
EXIT_INPUT = 2
EXIT_ENVIRONMENT = 3

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 regression (a gate or parity check failed); "
    "2 usage or input error (bad option, pipeline file, missing or corrupt file, checksum); "
    "3 environment error (missing dependency, Model Optimizer or runtime failure); 130 interrupted (Ctrl-C), "
    "143 terminated (SIGTERM): resume by running the same command again."
)


class ToolkitError(Exception):
    """Base of all user-facing errors. ``str(err)`` is a single line."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        # Keep the headline on one line; longer context (a tool's log tail) goes to ``detail``.
        super().__init__(" ".join(message.split()))
        self.detail = detail


class UsageError(ToolkitError):
    """A command was called with options that do not fit together."""


class CardError(ToolkitError):
    """The pipeline (model card) file is missing a key or holds a wrong value."""


class InputDataError(ToolkitError):
    """A file the user supplied or that we downloaded is missing, truncated or corrupt."""


class EnvironmentProblem(ToolkitError):
    """A dependency or tool is missing or unusable on this machine."""

    exit_code = EXIT_ENVIRONMENT


class ConversionError(EnvironmentProblem):
    """Model Optimizer failed; ``detail`` holds the tail of its log."""


class BackendError(EnvironmentProblem):
    """An inference runtime (MXNet, OpenVINO) failed to load or run a model."""


class GateFailure(ToolkitError):
    """A regression gate or a parity check failed."""

    exit_code = EXIT_REGRESSION
