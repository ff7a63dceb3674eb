"""run_pipeline's checks before any work."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from ssh_toolkit.cli import app
from ssh_toolkit.errors import UsageError
from ssh_toolkit.pipeline import run_pipeline
from ssh_toolkit.workspace import Workspace


def test_run_with_limit_is_refused_before_any_work_saying_what_to_do(card, tmp_path):
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(UsageError) as e:
        run_pipeline(card, ws, weights="toy", limit=3, run_dir=tmp_path / "run", progress=False, say=lambda m: None)
    msg = str(e.value)
    assert "ssh-mxnet-toy-640.json: this run cannot be gated against that baseline" in msg
    assert "n_images 14 vs 3" in msg
    assert "drop --limit to gate against it, or pass --baseline NEW.json" in msg
    assert not (ws.root / "checkpoints").exists() and not (ws.root / "ir").exists()
    assert not (tmp_path / "run").exists()


def test_run_with_limit_and_a_new_baseline_path_is_not_refused_up_front(card, tmp_path, monkeypatch):
    """The hint's way out applies to 'run': a --baseline that does not exist yet skips the up-front check."""
    import ssh_toolkit.pipeline as pipeline

    reached = []
    monkeypatch.setattr(pipeline, "ensure_checkpoint", lambda *a, **k: reached.append(1) or (_ for _ in ()).throw(
        KeyboardInterrupt()))
    r = CliRunner().invoke(app, ["run", "--limit", "3", "--baseline", str(tmp_path / "new.json"),
                                 "--workspace", str(tmp_path / "ws")])
    assert reached == [1] and r.exit_code == 130
