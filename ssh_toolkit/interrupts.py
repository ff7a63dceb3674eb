"""Ctrl-C and SIGTERM: one line, the cleanup of ``finally`` blocks, exit 130 (SIGINT) or 143 (SIGTERM).

The console script starts here (``ssh_toolkit.__main__``): the handlers are installed before anything heavy
is imported, so a signal at any moment, during start-up included, ends the same way. A signal raises
:class:`KeyboardInterrupt` (:class:`Terminated` for SIGTERM) in the main thread, so every ``finally`` and
``except KeyboardInterrupt`` of the toolkit runs (temporary files removed, requests in flight finished and
cached, reserved run folders released). A signal that arrives while a module is being imported (where an
exception could be printed and swallowed by a C extension), or a second signal while the cleanup runs, ends
the process at once after the same line (reserved run folders released; temporaries it leaves are removed by
the next command as stale).

This module imports nothing but the standard library.
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
_LINES = {
    signal.SIGINT: "ssh-toolkit: interrupted; finished work is kept, run the same command again to resume",
    signal.SIGTERM: "ssh-toolkit: terminated; finished work is kept, run the same command again to resume",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C's KeyboardInterrupt so the same cleanup runs."""


_received: int | None = None  # the first signal this process got
_reported = False


def _importing(frame) -> bool:
    """Whether a module is being imported: the exception could land in a C extension's initialisation, which
    prints it as a traceback and carries on, or turns it into an ImportError."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _handler(signum: int, frame) -> None:
    global _received
    if _received is None:
        _received = signum
        if not _importing(frame):
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
    # During an import, or a second signal while cleaning up: stop now.
    _exit_now()


def _exit_now() -> None:
    """The line, the reserved run folders released, exit; temporaries left are removed by the next command."""
    code = report()
    run_record = sys.modules.get("ssh_toolkit.run_record")
    if run_record is not None:
        try:
            run_record.release_unused_run_dirs()
        except Exception:
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)


def install() -> None:
    """Route SIGINT and SIGTERM through :func:`_handler` (main thread only, as Python requires)."""
    global _received, _reported
    _received, _reported = None, False
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _handler)


def received() -> int | None:
    return _received


def exit_code(error: BaseException | None = None) -> int:
    terminated = _received == signal.SIGTERM or (_received is None and isinstance(error, Terminated))
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def report(error: BaseException | None = None) -> int:
    """Print the one line and return the exit code. After a signal this process handled: once, and further
    signals are ignored while it exits (so exit-time cleanup runs to its end)."""
    global _reported
    code = exit_code(error)
    if _received is None or not _reported:
        if _received is not None:
            _reported = True
            for s in (signal.SIGINT, signal.SIGTERM):
                try:
                    signal.signal(s, signal.SIG_IGN)
                except ValueError:  # not the main thread
                    pass
        line = _LINES[signal.SIGTERM if code == EXIT_TERMINATED else signal.SIGINT]
        try:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
    return code


def main(app=None) -> None:
    """The ``ssh-toolkit`` console script: handlers first, then the command line (``cli.app`` unless given)."""
    install()
    try:
        if app is None:
            from .cli import app
        app(prog_name="ssh-toolkit")
    except SystemExit:
        if _received is not None:  # e.g. Click turned the KeyboardInterrupt into a silent exit 130
            sys.exit(report())
        _ignore_signals()
        raise
    except BaseException as e:
        # A KeyboardInterrupt outside the commands' own handling, or what became of one: raised inside a C
        # extension's initialisation it surfaces as an ImportError ("numpy._core.multiarray failed to import").
        if _received is not None or isinstance(e, KeyboardInterrupt):
            sys.exit(report(e))
        raise
    _ignore_signals()


def _ignore_signals() -> None:
    """The command is over: a late signal must not put a traceback into the interpreter's shutdown."""
    if _received is None:
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
