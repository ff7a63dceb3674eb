"""ssh-toolkit: convert the SSH MXNet face detector to OpenVINO IR and validate it.

The Python API behind the CLI (each name is importable from its module as well)::

    from ssh_toolkit import load_card, Workspace, ensure_checkpoint, convert_all, evaluate, check_gate
"""

__version__ = "0.1.0"

_API = {
    "load_card": "card",
    "Workspace": "workspace",
    "Checkpoint": "workspace",
    "download_checkpoint": "download",
    "ensure_checkpoint": "pipeline",
    "run_pipeline": "pipeline",
    "convert_all": "convert",
    "run_parity": "compare",
    "compare_outputs": "metric.parity",
    "evaluate": "evaluation",
    "load_irs": "evaluation",
    "default_baseline": "pipeline",
    "Baseline": "gate",
    "check_gate": "gate",
    "gate_run": "gate",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    # Imported on first use, so that `import ssh_toolkit` stays cheap for the CLI's --help.
    if name in _API:
        from importlib import import_module

        return getattr(import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'ssh_toolkit' has no attribute {name!r}")
