"""The whole pipeline of a model card: checkpoint -> convert -> evaluate -> report -> gate.

Every step skips work that is already up to date (checkpoint present, IR fingerprint unchanged, raw outputs
cached), so a second ``ssh-toolkit run`` only re-scores and re-reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from .card import ModelCard
from .convert import ConvertedModel, convert_all
from .errors import UsageError
from .evaluation import Evaluation, evaluate
from .executors import Executor
from .fileio import check_replaceable
from .workspace import CHECKPOINT_KINDS, Checkpoint, Workspace, weights_of

if TYPE_CHECKING:
    from .gate.baseline import Baseline


def default_baseline(card: ModelCard, kind: str, size: int) -> Path:
    """``baselines/<card>-<kind>-<size>.json`` beside the card's folder.

    For the embedded card that is the package's own ``ssh_toolkit/baselines/``; for a card of yours in
    ``<dir>/pipelines/<name>.yaml`` it is ``<dir>/baselines/``.
    """
    return card.path.resolve().parent.parent / "baselines" / f"{card.name}-{kind}-{size}.json"


def ensure_checkpoint(card: ModelCard, ws: Workspace, weights: str, seed: int = 0,
                      say: Callable[[str], None] = print) -> Checkpoint:
    """The checkpoint of ``weights`` (real | standin | toy), made or downloaded if absent."""
    if weights not in CHECKPOINT_KINDS:
        raise UsageError(f"--weights must be one of {', '.join(CHECKPOINT_KINDS)}, got {weights!r}")
    directory = ws.checkpoint_dir(weights)
    if weights == "real":
        from .download import download_checkpoint

        return download_checkpoint(card, ws)
    if (directory / Checkpoint.RECORD).is_file():
        ck = Checkpoint.load(directory)
        if ck.seed == seed:
            say(f"checkpoint: {weights} up to date ({directory})")
            return ck
    say(f"checkpoint: synthesizing {weights} (seed {seed})")
    return synthesize_checkpoint(card, ws, weights, seed)


def synthesize_checkpoint(card: ModelCard, ws: Workspace, kind: str, seed: int = 0) -> Checkpoint:
    """Write a generated stand-in checkpoint of ``kind`` (standin | toy) into the workspace."""
    if kind == "standin":
        from .standins.synthesize import synthesize_standin as make
    elif kind == "toy":
        from .standins.toy import synthesize_toy as make
    else:
        raise UsageError(f"--kind must be standin or toy, got {kind!r}")
    return make(card, ws.checkpoint_dir(kind), seed=seed)


def check_plan_comparable(card: ModelCard, baseline: Baseline, baseline_path: Path, weights: str, size: int,
                          data_root: Path, limit: int | None, shard: tuple[int, int] | None = None) -> None:
    """UsageError, before any work, when the run that ``run`` is about to make cannot be gated against ``baseline``.

    Compares everything the gate's comparability rule compares that is known before inference: weights, input
    size, protocol, and the selected images and their ground truth.
    """
    from types import SimpleNamespace

    from .data.wider import open_wider
    from .evaluation import dataset_identity
    from .gate.baseline import comparability_differences

    ds = open_wider(data_root).select(limit=limit, shard=shard)
    planned = SimpleNamespace(
        model=card.name, weights=weights_of(weights), checkpoint_kind=weights,
        input_size=size, n_images=len(ds.images), protocol=card.protocol.name,
        protocol_params=card.protocol.as_dict(),
        dataset={"n_images": len(ds.images), **dataset_identity(ds)})
    diffs = comparability_differences(baseline, planned)
    if diffs:
        hint = ("drop --limit to gate against it" if limit is not None and baseline.n_images != len(ds.images)
                else "run with the baseline's settings")
        raise UsageError(f"{baseline_path}: this run cannot be gated against that baseline ({'; '.join(diffs)}; "
                         f"baseline vs this run): {hint}, or pass --baseline NEW.json (a file that does not exist "
                         f"yet) to run without a gate and be told how to record that baseline")


@dataclass
class PipelineRun:
    checkpoint: Checkpoint
    irs: list[ConvertedModel]
    evaluation: Evaluation
    html: Path
    gate: object  # gate.GateResult, or None without a baseline
    baseline: Path


def run_pipeline(card: ModelCard, ws: Workspace, *, weights: str = "toy", data_root: Path | None = None,
                 input_size: int | None = None, limit: int | None = None, baseline: Path | None = None,
                 run_dir: Path | None = None, progress: bool = True,
                 exec_precisions: Sequence[str] = ("f32", "default"),
                 say: Callable[[str], None] = print, mo_env: Path | None = None,
                 quantize: bool = True, shard: tuple[int, int] | None = None,
                 executor: Executor | None = None) -> PipelineRun:
    from .data.sample import make_sample
    from .gate import Baseline, check_gate
    from .report.html import write_html_report

    size = card.resolve_input_size(input_size)
    if weights not in CHECKPOINT_KINDS:
        raise UsageError(f"--weights must be one of {', '.join(CHECKPOINT_KINDS)}, got {weights!r}")
    checked = None
    if run_dir is not None:  # before the dataset, checkpoint, conversion and inference, not after
        checked = check_replaceable(run_dir, "run")
    if data_root is None:
        data_root = ws.sample_data
        if not (data_root / "wider_face_split").is_dir():
            say(f"dataset: generating the WIDER-layout sample in {data_root.resolve()}")
            make_sample(data_root)
    baseline = baseline or default_baseline(card, weights, size)
    if baseline.is_file():  # before any conversion or inference: minutes of work must not end in "not comparable"
        check_plan_comparable(card, Baseline.load(baseline), baseline, weights, size, data_root, limit, shard)
    ck = ensure_checkpoint(card, ws, weights, say=say)
    irs = convert_all(card, ck, ws, input_size=size, mo_env=mo_env)
    for ir in irs:
        say(f"convert {ir.precision}: " + ("up to date" if ir.reused else f"converted in {ir.seconds:.1f} s"))
    if quantize and card.quantize is not None and "FP32" in card.precisions:
        from .quantize import quantize_in_child  # evaluation follows in this process: keep NNCF out of it

        q = quantize_in_child(card, ck, ws, data_root, input_size=size, progress=progress)
        say("quantize INT8: " + ("up to date" if q.reused else f"quantized in {q.seconds:.1f} s") +
            f" (drop {q.achieved_drop:.3f} mAP points vs FP32 on {q.validation['n_images']} validation images)")
        irs.append(q)
    ev = evaluate(card, ck, irs, data_root, ws, input_size=size, limit=limit, run_dir=run_dir, progress=progress,
                  exec_precisions=exec_precisions, checked=checked, shard=shard, executor=executor)
    html = write_html_report(ev.run_dir)
    result = (check_gate(ev.summary, Baseline.load(baseline), card, str(baseline), workspace=ws.root,
                          data_root=Path(data_root).absolute())
              if baseline.is_file() else None)
    return PipelineRun(ck, irs, ev, html, result, baseline)
