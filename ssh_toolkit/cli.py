"""The ``ssh-toolkit`` command line: one thin function per command over the Python API.

Errors the user can fix are ToolkitError subclasses; ``errors_to_exit`` is the one place that turns them into
a one-line message on stderr and the exit code of ``errors.py``. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Iterator, Literal, Optional

import typer

from . import interrupts
from .card import EXEC_SUFFIXES, PRECISIONS, QUANTIZED
from .errors import EXIT_CODES_HELP, EXIT_ENVIRONMENT, ToolkitError, UsageError
from .executors import EXECUTOR_CHOICES
from .run_record import REFERENCE_MODEL, ROUTES, default_run_dir, ir_model_name
from .runners.openvino import EXEC_CHOICES
from .workspace import CHECKPOINT_KINDS, Checkpoint, Workspace

# Allowed option values (Literal choices: shown by --help, checked by Click), from the card and workspace constants.
AUTO = "auto"
WEIGHTS_CHOICES = (AUTO, *CHECKPOINT_KINDS)
STANDIN_KINDS = tuple(k for k in CHECKPOINT_KINDS if k != "real")
MODEL_CHOICES = (REFERENCE_MODEL, *(ir_model_name(p, e, r) for r in ROUTES
                                    for p in ((*PRECISIONS, QUANTIZED) if r == "mo" else PRECISIONS)
                                    for e in (None, *EXEC_SUFFIXES)))
# Repeatable options take an Enum (Typer lists cannot hold a Literal); _plain hands the command plain strings.
PrecisionChoice = StrEnum("PrecisionChoice", {p: p for p in PRECISIONS})
ModelChoice = StrEnum("ModelChoice", {m: m for m in MODEL_CHOICES})
ExecChoice = StrEnum("ExecChoice", {e: e for e in EXEC_CHOICES})


def _plain(values: Optional[list[StrEnum]]) -> Optional[list[str]]:
    return None if values is None else [str(v.value) for v in values]

app = typer.Typer(
    name="ssh-toolkit",
    help="Convert the SSH (Single Stage Headless) MXNet face detector to OpenVINO IR and validate accuracy "
         "and numeric parity under the Open Model Zoo protocol.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

Pipeline = Annotated[Path, typer.Option("--pipeline", "-p", help="Pipeline (model card) YAML file.",
                                        show_default=True)]


def _folder(value: str | Path) -> Path:
    """A folder option's value; '' (an unset shell variable) is an error, not the current folder."""
    if isinstance(value, Path):
        return value
    if not str(value).strip():
        raise typer.BadParameter("empty path; give a folder")
    return Path(value)


WorkspaceOpt = Annotated[Optional[Path], typer.Option(
    "--workspace", "-w", parser=_folder, metavar="PATH",
    help="Where checkpoints, IRs and caches live [default: $SSH_TOOLKIT_WORKSPACE or ./workspace].")]
WeightsOpt = Annotated[Literal[WEIGHTS_CHOICES], typer.Option(
    "--weights", help="Which checkpoint: real (downloaded), standin (seeded SSH architecture), toy (toy "
                      "detector), or auto = the first present of real, standin, toy.")]
InputSize = Annotated[Optional[int], typer.Option(
    "--input-size", help="Square network input size, a multiple of the card's largest output stride [default: the card's input.size].")]
ExecPrecisions = Annotated[Optional[list[ExecChoice]], typer.Option(
    "--exec-precision", callback=_plain, metavar="|".join(EXEC_CHOICES),
    help="How IRs are executed, repeatable: f32 (pinned: numeric parity, models ir-fp32, ir-fp16), bf16 (pinned), "
         "default (the runtime's own choice on this CPU, i.e. what a deployment runs; added as ir-fp32@bf16 etc. "
         "when it is not f32).")]
Precisions = Annotated[Optional[list[PrecisionChoice]], typer.Option(
    "--precision", case_sensitive=False, callback=_plain, metavar="|".join(PRECISIONS),
    help="IR precision, repeatable [default: all in the card].")]
LIMIT_HELP = "Use only the first N images."


def _limit(default: str):
    """The one --limit of compare, evaluate and run: same type, minimum and help; only the default differs."""
    return typer.Option("--limit", min=1, metavar="N", show_default=default, help=LIMIT_HELP)
ExecutorOpt = Annotated[Literal[EXECUTOR_CHOICES], typer.Option(
    "--executor", help="Where inference runs: local (this process) or dask (a Dask cluster: the one at --scheduler, "
                       "else a local cluster on 127.0.0.1 with one worker per core; needs "
                       "pip install 'ssh-toolkit[dask]'). Results go into the same cache either way.")]
SchedulerOpt = Annotated[Optional[str], typer.Option(
    "--scheduler", metavar="ADDRESS", help="Dask scheduler address for --executor dask, e.g. "
                                           "tcp://scheduler-host:8786.")]
ShardOpt = Annotated[Optional[str], typer.Option(
    "--shard", metavar="K/N", help="Every N-th image starting at the K-th (0-based position p with p % N == K-1); "
                                   "'ssh-toolkit merge' joins the run folders of shards 1/N..N/N.")]


def _executor(kind: str, scheduler: Optional[str]):
    """The executor of --executor/--scheduler (a context manager: a local Dask cluster is stopped after)."""
    from .executors import open_executor

    return open_executor(kind, scheduler)


MoEnv = Annotated[Optional[Path], typer.Option(
    "--mo-env", help="An existing virtual environment with openvino-dev[mxnet]==2023.3.0 to run Model Optimizer "
                     "from (checked, never modified) [default: $SSH_TOOLKIT_MO_ENV, else the one the toolkit "
                     "creates on first use under $SSH_TOOLKIT_HOME/envs/].")]


def _default_pipeline() -> Path:
    from .card import DEFAULT_CARD

    return DEFAULT_CARD


@contextlib.contextmanager
def errors_to_exit() -> Iterator[None]:
    try:
        try:
            yield
        except Exception:
            if interrupts.received() is not None:  # what a signal turned into (an ImportError, a runtime error)
                raise KeyboardInterrupt from None
            raise
    except ToolkitError as e:
        typer.echo(f"ssh-toolkit: error: {e}", err=True)
        raise typer.Exit(e.exit_code) from None
    except ModuleNotFoundError as e:  # a dependency is missing: the environment's fault, not the user's input
        typer.echo(f"ssh-toolkit: error: missing dependency {e.name!r} ({e}); install the toolkit with its "
                   f"dependencies: pip install -e .", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT) from None
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (interrupts.Terminated): one line, exit 130 or 143
        raise typer.Exit(interrupts.report(e)) from None
    except OSError as e:  # the workspace, cache or report folder is read-only, full, or not a folder
        typer.echo(f"ssh-toolkit: error: {_os_error_line(e)}", err=True)
        raise typer.Exit(EXIT_ENVIRONMENT) from None


def _os_error_line(e: OSError) -> str:
    """``<path>: <OS reason>`` on one line, e.g. ``/ws/cache/raw/ab/abc.npz: No space left on device``."""
    reason = e.strerror or str(e) or type(e).__name__
    where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else e.filename
    return " ".join(f"{where}: {reason}".split()) if where is not None else " ".join(reason.split())


def _workspace(path: Optional[Path]) -> Workspace:
    return Workspace((path or Workspace.default().root).resolve())  # absolute, so every printed path is


def _checkpoint(ws: Workspace, weights: str) -> Checkpoint:
    if weights != "auto" and weights not in CHECKPOINT_KINDS:
        raise UsageError(f"--weights must be auto or one of {', '.join(CHECKPOINT_KINDS)}, got {weights!r}")
    kinds = CHECKPOINT_KINDS if weights == "auto" else (weights,)
    for kind in kinds:
        directory = ws.checkpoint_dir(kind)
        if (directory / Checkpoint.RECORD).is_file():
            ck = Checkpoint.load(directory)
            typer.echo(f"checkpoint: {ck.kind} ({'stand-in' if ck.is_standin else 'real'} weights) in {directory}", err=True)
            return ck
    if weights == "auto":
        raise UsageError(f"{ws.root}: no checkpoint; run 'ssh-toolkit download' (real weights) or "
                         f"'ssh-toolkit synthesize' (stand-in) first")
    hint = "ssh-toolkit download" if weights == "real" else f"ssh-toolkit synthesize --kind {weights}"
    raise UsageError(f"{ws.checkpoint_dir(weights)}: no {weights} checkpoint; run '{hint}' first")


def _card(path: Path):
    from .card import load_card

    return load_card(path)


def _precisions(card, requested: Optional[list[str]]) -> tuple[str, ...]:
    if not requested:
        return card.precisions
    bad = [p for p in requested if p.upper() not in card.precisions]
    if bad:
        raise UsageError(f"--precision {bad[0]} is not in the card's precisions {', '.join(card.precisions)}")
    return tuple(dict.fromkeys(p.upper() for p in requested))


# ------------------------------------------------------------------------------------------------------------
@app.command()
def download(
    archive: Annotated[Optional[Path], typer.Option(
        "--archive", help="Import this ssh-model-final.zip instead of downloading (size and sha256 checked).")] = None,
    from_dir: Annotated[Optional[Path], typer.Option(
        "--from-dir", help="Import already-unpacked sshb-symbol.json + sshb-0000.params from this folder.")] = None,
    mirror: Annotated[Optional[list[str]], typer.Option(
        "--mirror", metavar="URL", help="Extra URL to try before the card's sources; repeatable.")] = None,
    retries: Annotated[int, typer.Option(
        min=0, metavar="N", help="Retries per source after a transient failure (connection error, timeout, "
                                 "HTTP 5xx, a body cut short), with exponential backoff: each source gets 1 + N "
                                 "attempts.")] = 3,
    force: Annotated[bool, typer.Option(help="Download again even if the checkpoint is up to date.")] = False,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """Fetch the real MXNet checkpoint archive, verify size and sha256, unpack it into the workspace.

    The original Dropbox link has been dead since 2021: supply the archive with --archive, the unpacked files
    with --from-dir, or a mirror with --mirror (or checkpoint.mirrors in the pipeline file). A partial download
    resumes from its .part file.
    """
    from .download import download_checkpoint, find_checkpoint

    with errors_to_exit():
        card = _card(pipeline)
        ws = _workspace(workspace)
        if archive is None and from_dir is None and not force and (ck := find_checkpoint(card, ws)):
            typer.echo(f"checkpoint up to date: {ck.directory} (params sha256 {ck.params_sha256})")
            return
        ck = download_checkpoint(card, ws, archive=archive, from_dir=from_dir, mirrors=tuple(mirror or ()),
                                 retries=retries, force=force)
        how = "not checksum-verified: imported from unpacked files" if from_dir else "archive sha256 verified"
        typer.echo(f"checkpoint ready: {ck.directory} (params sha256 {ck.params_sha256}; {how})")


@app.command()
def synthesize(
    kind: Annotated[Literal[STANDIN_KINDS], typer.Option(
        help="standin: seeded weights with the exact SSH architecture (numeric parity only); toy: a toy detector "
             "with the SSH input/output contract that finds the faces of the generated sample dataset.")] = "standin",
    seed: Annotated[int, typer.Option(min=0, help="Random seed of --kind standin; the same seed gives byte-identical "
                                                  "params. The toy's weights are fixed (the seed is not used).")] = 0,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """Write a generated stand-in checkpoint (the real weights cannot be fetched): recorded as a stand-in."""
    with errors_to_exit():
        from .pipeline import synthesize_checkpoint

        ck = synthesize_checkpoint(_card(pipeline), _workspace(workspace), kind, seed)
        how = "fixed: --seed has no effect" if kind == "toy" else f"seed {seed}"  # the toy's weights are constants
        typer.echo(f"{kind} checkpoint (stand-in weights, {how}): {ck.symbol_path} + {ck.params_path.name}")


@app.command()
def convert(
    weights: WeightsOpt = "auto",
    precision: Precisions = None,
    input_size: InputSize = None,
    force: Annotated[bool, typer.Option(help="Convert even if the IR is up to date.")] = False,
    mo_env: MoEnv = None,
    route: Annotated[Literal[ROUTES], typer.Option(
        help="mo: Model Optimizer 2023.3 from its legacy environment; native: translate the checkpoint on the "
             "current OpenVINO without Model Optimizer or MXNet, to ir/<kind>-<size>/native/ (models "
             "ir-native-fp32, ir-native-fp16).")] = "mo",
    dynamic_shape: Annotated[bool, typer.Option(
        "--dynamic-shape", help="With --route native: leave the input's height and width dynamic (to "
                                "ir/<kind>-dynamic/native/).")] = False,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """Run Model Optimizer with the card's arguments (--reverse_input_channels, --mean_values, ...) to FP32
    and FP16 IRs, or translate the checkpoint natively (--route native). Skips an IR that is up to date for the
    same checkpoint, arguments and converter."""
    from .convert import convert as do_convert

    with errors_to_exit():
        if route == "native" and mo_env is not None:
            raise UsageError("--mo-env names Model Optimizer's environment; --route native converts without Model "
                             "Optimizer")
        card = _card(pipeline)
        ws = _workspace(workspace)
        ck = _checkpoint(ws, weights)
        for p in _precisions(card, precision):
            ir = do_convert(card, ck, ws, p, input_size, force=force, mo_env=mo_env, route=route,
                            dynamic=dynamic_shape)
            converter = "Model Optimizer" if ir.route == "mo" else "native translation"
            how = "up to date, not converted again" if ir.reused else f"{converter} {ir.seconds:.1f} s"
            typer.echo(f"{p}: {ir.xml} ({how}; outputs {', '.join(ir.outputs)})")


@app.command()
def quantize(
    weights: WeightsOpt = "auto",
    input_size: InputSize = None,
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", help="WIDER-layout dataset whose first --subset-size images validate the INT8 IR [default: "
                            "the generated sample in the workspace].")] = None,
    calibration_root: Annotated[Optional[Path], typer.Option(
        "--calibration-root", help="WIDER-layout dataset the calibration images are drawn from [default: "
                                   "--data-root; the record then says they are part of the evaluation set].")] = None,
    calibration_images: Annotated[Optional[int], typer.Option(
        "--calibration-images", min=1, metavar="N",
        help="Calibration images, drawn with --seed; fewer present is an error [default: the card's "
             "quantize.calibration_images, or all present when fewer].")] = None,
    max_drop: Annotated[Optional[float], typer.Option(
        "--max-drop", min=0, metavar="POINTS",
        help="mAP points the INT8 IR may lose against the FP32 IR on the validation images [default: the card's "
             "quantize.max_drop].")] = None,
    subset_size: Annotated[Optional[int], typer.Option(
        "--subset-size", min=0, metavar="N",
        help="Validation images: the first N of --data-root, 0 = all [default: the card's quantize.subset_size]."
    )] = None,
    seed: Annotated[Optional[int], typer.Option(
        "--seed", min=0, help="Seed of the calibration draw [default: the card's quantize.seed].")] = None,
    force: Annotated[bool, typer.Option(help="Quantize even if the INT8 IR is up to date.")] = False,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """Post-training INT8 of the FP32 IR with NNCF's accuracy control: layers go back to floating point until
    the INT8 IR loses at most --max-drop mAP points (the card's protocol) against the FP32 IR. Writes
    ir/<kind>-<size>/INT8/ (model ir-int8) with its record; skipped when up to date. Exit 1 when the drop limit
    cannot be reached (nothing written), 2 when fewer calibration images than asked are present."""
    from .quantize import quantize as do_quantize

    with errors_to_exit():
        card = _card(pipeline)
        ws = _workspace(workspace)
        ck = _checkpoint(ws, weights)
        root = _data_root(ws, data_root)
        q = do_quantize(card, ck, ws, root, input_size=input_size, calibration_root=calibration_root,
                        calibration_count=calibration_images, max_drop=max_drop, subset_size=subset_size,
                        seed=seed, force=force, say=lambda m: typer.echo(m, err=True))
        how = "up to date, not quantized again" if q.reused else f"quantized in {q.seconds:.1f} s"
        typer.echo(f"INT8: {q.xml} ({how})")
        typer.echo(f"mAP on {q.validation['n_images']} validation images: FP32 {q.map_fp32:.3f} %, INT8 "
                   f"{q.map_int8:.3f} %: drop {q.achieved_drop:.3f} points (max {q.max_drop:g}); "
                   f"{q.n_int8_layers} operations with INT8 inputs, {len(q.float_layers)} put back in floating "
                   f"point"
                   + (f" ({', '.join(q.float_layers)})" if q.float_layers else ""))
        if q.calibration_note:
            typer.echo(f"note: {q.calibration_note}")


@app.command()
def compare(
    images: Annotated[Optional[Path], typer.Option(
        "--images", help="Folder of images (searched recursively).")] = None,
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", help="A WIDER-layout dataset; its first --limit images are used.")] = None,
    limit: Annotated[Optional[int], _limit("2")] = 2,
    weights: WeightsOpt = "auto",
    precision: Precisions = None,
    input_size: InputSize = None,
    swap_channels: Annotated[bool, typer.Option(
        "--swap-channels", help="Self-check: also feed the IR the wrong channel order and report how large the "
                                "difference gets (it must fail: that is how channel-order bugs show).")] = False,
    report_dir: Annotated[Optional[Path], typer.Option(
        "--report-dir", help="Where to write the tables [default: reports/runs/<time>-compare].")] = None,
    exec_precision: ExecPrecisions = None,
    shard: ShardOpt = None,
    executor: ExecutorOpt = "local",
    scheduler: SchedulerOpt = None,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """Run MXNet and each IR on the same images, each with its own preprocessing, and compare every output.

    Prints one PASS/FAIL line per output and precision with the smallest atol that would pass; writes the
    tables (CSV, JSON, Markdown) to the report folder. Exit 1 when an output exceeds its tolerance.
    """
    from .compare import list_images, run_parity
    from .convert import ConvertedModel
    from .fileio import check_replaceable
    from .report.markdown import write_parity_report

    with errors_to_exit():
        ex = _executor(executor, scheduler)  # a missing Dask is said before any work
        card = _card(pipeline)
        ws = _workspace(workspace)
        ck = _checkpoint(ws, weights)
        size = card.resolve_input_size(input_size)
        if (images is None) == (data_root is None):
            raise UsageError("give exactly one of --images FOLDER or --data-root WIDER_ROOT")
        if images is not None:
            paths = list_images(images)
            if shard is not None:
                k, n = _shard(shard)
                paths = paths[k - 1::n]
            paths = paths[:limit] if limit else paths
        else:
            from .data.wider import open_wider

            ds = open_wider(data_root)
            paths = [ds.image_path(item) for item in ds.select(limit=limit, shard=_shard(shard))]
        irs, native = [], []
        for p in _precisions(card, precision):
            mo_done = (ws.ir_dir(ck.kind, size, p) / "conversion.json").is_file()
            native_done = (ws.ir_dir(ck.kind, size, p, "native") / "conversion.json").is_file()
            if not mo_done and not native_done:
                raise UsageError(f"{ws.ir_dir(ck.kind, size, p)}: not converted; run 'ssh-toolkit convert --weights "
                                 f"{ck.kind} --input-size {size} --precision {p}' (or the same with --route native) "
                                 f"first")
            if mo_done:
                irs.append(ConvertedModel.load(ws.ir_dir(ck.kind, size, p)))
            if native_done:  # both routes side by side, or the native route's alone
                native.append(ConvertedModel.load(ws.ir_dir(ck.kind, size, p, "native")))
        if not precision and card.quantize is not None and (ws.ir_dir(ck.kind, size, QUANTIZED) / "conversion.json"
                                                             ).is_file():
            from .quantize import QuantizedModel

            # The INT8 IR when there is one: its differences are shown (reported, not judged).
            q = QuantizedModel.load(ws.ir_dir(ck.kind, size, QUANTIZED))
            if stale := q.stale(ws):
                typer.echo(f"warning: {stale}", err=True)
            else:
                irs.append(q)
        irs += native
        out_dir = report_dir or default_run_dir("compare")
        checked = check_replaceable(out_dir, "compare")  # before the work, not after
        with ex:
            run = run_parity(card, ck, irs, paths, ws, swap_channels_check=swap_channels,
                             exec_precisions=exec_precision or ("f32",), executor=ex)
        out = write_parity_report(out_dir, card, ck, run, checked=checked)
        for r in run.results:
            for d in r.diffs:
                if card.parity_reported_only(r.precision) and d.passed:
                    typer.echo(f"[{r.test}] REPORTED | {d.name} | max_abs={d.max_abs:.3e} | cosine={d.cosine:.9f} "
                               f"(not gated: INT8 is gated on mAP drop and box match rate)")
                    continue
                typer.echo(f"[{r.test}] {d.verdict_line()}")
        for row in run.routes:
            same = "identical" if row["identical"] else "DIFFERENT"
            typer.echo(f"[{row['native']} vs {row['mo']}] {row['output']}: max_abs={row['max_abs']:.3e} ({same})")
        for r in run.self_check:
            worst = max(r.diffs, key=lambda d: d.min_passing_atol)
            verdict = "detected (FAIL as expected)" if not r else "NOT detected: the comparison is too loose"
            typer.echo(f"[{r.test} fed RGB instead of BGR] self-check {verdict}: worst output {worst.name} "
                       f"max_abs={worst.max_abs:.3e}, {worst.min_passing_atol / max(worst.tolerance.atol, 1e-30):.0f}x "
                       f"its atol")
        typer.echo(f"report: {out.resolve()}")
        if any(bool(r) for r in run.self_check):
            from .errors import GateFailure

            raise GateFailure("the --swap-channels self-check passed: these tolerances cannot see a channel-order "
                              f"bug; tighten them in {card.path}")
        if not run:
            failed = [f"{r.test}: {', '.join(r.failed)}" for r in run.results if not r]
            from .errors import GateFailure

            raise GateFailure(f"parity failed for {'; '.join(failed)} (see {out})")


@app.command("make-sample")
def make_sample_cmd(
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Dataset root [default: <workspace>/data/wider-sample].")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Random seed; the same seed gives byte-identical files.")] = 0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Generate the small deterministic sample dataset in the exact WIDER FACE val layout."""
    from .data.sample import make_sample

    with errors_to_exit():
        root = make_sample(out or _workspace(workspace).sample_data, seed=seed)
        typer.echo(f"sample dataset: {root.resolve()}")


def _data_root(ws: Workspace, data_root: Optional[Path]) -> Path:
    """``--data-root``, or the generated sample in the workspace, which must exist."""
    if data_root is not None:
        return data_root
    if not ws.sample_data.exists():
        raise UsageError(f"{ws.sample_data}: no dataset; pass --data-root or run 'ssh-toolkit make-sample'")
    return ws.sample_data


def _available_irs(card, ck: Checkpoint, ws: Workspace, size: int, model: Optional[list[str]]):
    """The IRs converted for this checkpoint and size; without --model, one line names those left out."""
    from .evaluation import load_irs

    irs = load_irs(card, ck, ws, size)
    if not model:
        _say_left_out(card, ck, irs, size)
    return irs


def _shard(text: Optional[str]) -> Optional[tuple[int, int]]:
    if text is None:
        return None
    from .data.wider import parse_shard

    return parse_shard(text)


@app.command()
def evaluate(
    dataset: Annotated[str, typer.Option(help="Dataset format; only 'wider' (WIDER FACE val layout).")] = "wider",
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", help="Root holding WIDER_val/images and wider_face_split/ [default: the generated sample "
                            "in the workspace].")] = None,
    model: Annotated[Optional[list[ModelChoice]], typer.Option(
        "--model", case_sensitive=False, callback=_plain, metavar="|".join(MODEL_CHOICES),
        help="Model to evaluate, repeatable [default: all available].")] = None,
    limit: Annotated[Optional[int], _limit("all")] = None,
    shard: ShardOpt = None,
    subset: Annotated[Optional[list[str]], typer.Option(
        "--subset", metavar="ID|EVENT", help="Image identifier or event folder (e.g. 0--Parade); repeatable.")] = None,
    skip_missing: Annotated[bool, typer.Option(
        "--skip-missing", help="Leave out missing or empty image files (listed in the report) instead of "
                               "stopping before inference. A file that exists but cannot be decoded stops the "
                               "run when it is reached; what was inferred until then is cached.")] = False,
    weights: WeightsOpt = "auto",
    input_size: InputSize = None,
    official_gt: Annotated[Optional[Path], typer.Option(
        "--official-gt", help="Folder with the official wider_face_val.mat and wider_{easy,medium,hard}_val.mat: "
                              "adds the official WIDER Easy/Medium/Hard AP as a separate metric.")] = None,
    report_dir: Annotated[Optional[Path], typer.Option(
        "--report-dir", help="Run folder [default: reports/runs/<time>-<weights>-<size>].")] = None,
    jobs: Annotated[int, typer.Option(min=0, help="OpenVINO infer requests in flight (0 = OpenVINO's choice).")] = 0,
    strict_images: Annotated[bool, typer.Option(
        "--strict-images", help="Refuse damaged images that still decode (a truncated JPEG) before inference, "
                                "instead of naming them in the output and the report's image_warnings.")] = False,
    exec_precision: ExecPrecisions = None,
    executor: ExecutorOpt = "local",
    scheduler: SchedulerOpt = None,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """Run MXNet and every IR on a WIDER FACE layout dataset and compute mAP under the exact Open Model Zoo
    Accuracy Checker protocol, plus numeric parity and box match rate of each IR against MXNet.

    Raw outputs are cached per model and image: an interrupted run resumes, a re-run re-scores without
    inference. Writes summary.json, CSV/JSON tables and report.md into the run folder. Exit 1 when an IR's numeric
    parity verdict fails (the run folder is written and kept; 'ssh-toolkit gate' shows the verdicts).
    """
    from .evaluation import evaluate as do_evaluate

    with errors_to_exit():
        if dataset != "wider":
            raise UsageError(f"--dataset {dataset!r} is not supported; only 'wider'")
        ex = _executor(executor, scheduler)  # a missing Dask is said before any work
        card = _card(pipeline)
        ws = _workspace(workspace)
        ck = _checkpoint(ws, weights)
        size = card.resolve_input_size(input_size)
        root = _data_root(ws, data_root)
        irs = _available_irs(card, ck, ws, size, model)
        with ex:
            ev = do_evaluate(card, ck, irs, root, ws, models=model, input_size=size,
                             limit=limit, shard=_shard(shard), subset=subset, skip_missing=skip_missing,
                             run_dir=report_dir, jobs=jobs, official_gt=official_gt, strict_images=strict_images,
                             exec_precisions=exec_precision or ("f32", "default"), executor=ex)
        _print_evaluation(ev)
        _raise_for_parity(ev)


def _raise_for_parity(ev) -> None:
    """Exit 1 (GateFailure) when the run judged an IR's output outside its tolerance; the run folder is kept."""
    failed = [f"{p.test}: {', '.join(p.failed)}" for p in ev.parity if not p]
    if failed:
        from .errors import GateFailure

        raise GateFailure(f"parity failed for {'; '.join(failed)} (see {(ev.run_dir / 'summary.json').resolve()})")


def _say_left_out(card, ck, irs, size: int) -> None:
    """One line naming the card's IRs that are not converted at ``size`` (left out of a default model set)."""
    done = {ir.precision for ir in irs}
    missing = [p for p in card.precisions if p not in done]
    if missing:
        from .run_record import ir_model_name

        flags = " ".join(f"--precision {p}" for p in missing)
        typer.echo(f"not evaluated: {', '.join(ir_model_name(p) for p in missing)} (not converted at input size "
                   f"{size}; run 'ssh-toolkit convert --weights {ck.kind} --input-size {size} {flags}')", err=True)


def _print_evaluation(ev) -> None:
    s = ev.summary
    typer.echo(s.note)
    if ev.image_warnings:
        typer.echo(f"warning: {len(ev.image_warnings)} damaged image(s) decoded and evaluated anyway (listed in the "
                   f"report's image_warnings; --strict-images refuses them): {', '.join(ev.image_warnings)}")
    for name, value in s.map.items():
        cached = "from cache" if ev.inferred.get(name) == 0 else f"{ev.inferred.get(name)} inferred"
        typer.echo(f"map[{name}] = {value:.4f} %  ({s.n_images} images, {cached})")
    for name, aps in s.official.items():
        figures = ", ".join(f"{k} {v:.4f}" for k, v in aps.items())
        typer.echo(f"official WIDER AP[{name}]: {figures} (separate metric, not comparable with map)")
    for p in ev.parity:
        typer.echo(f"parity[{p.test}]: {_parity_verdict(p)}; box match rate "
                   f"{s.box_match[p.test].box_match_rate:.4f}")
    typer.echo(f"summary: {(ev.run_dir / 'summary.json').resolve()}")
    typer.echo(f"report: {(ev.run_dir / 'report.md').resolve()}")


def _parity_verdict(p) -> str:
    """PASS, FAIL with the reasons, or (INT8) reported, not gated: one model's parity line (evaluate, run, merge)."""
    from .card import REPORTED_ONLY

    verdict = "PASS" if p else "FAIL " + "; ".join(f"{d.name}: {d.reason}" for d in p.diffs if not d.passed)
    if p and p.diffs and all(d.tolerance == REPORTED_ONLY for d in p.diffs):  # INT8: shown, not judged
        verdict = f"reported, not gated (max |diff| {max(d.max_abs for d in p.diffs):.3e})"
    return verdict


def _print_gate(result) -> None:
    from .gate import write_step_summary

    for note in result.notes:
        typer.echo(note)
    for line in result.lines():
        typer.echo(line)
    typer.echo(result.verdict())
    for hint in result.hints:
        typer.echo(hint)
    write_step_summary(result.markdown())


@app.command()
def gate(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR",
                                            help="Run folder written by 'ssh-toolkit evaluate' or 'run'.")],
    baseline: Annotated[Path, typer.Option(
        "--baseline", metavar="FILE", help="Baseline JSON file, e.g. ssh_toolkit/baselines/ssh-mxnet-toy-640.json "
                                           "(the embedded card's) or <card dir>/../baselines/*.json for a card of "
                                           "yours.")],
    update_baseline: Annotated[bool, typer.Option(
        "--update-baseline", help="Record this run as the new baseline (refused when its own in-run checks "
                                  "fail).")] = False,
    pipeline: Pipeline = _default_pipeline(),
) -> None:
    """Check a run against a committed baseline with the card's rules: mAP vs baseline (and vs the card's
    published mAP with real weights), mAP drop of each IR vs MXNet, the run's per-output numeric parity
    verdicts, box match rate.

    Prints every rule with value, limit and verdict (and appends the Markdown table to $GITHUB_STEP_SUMMARY when
    set). Exit 0 pass, 1 regression, 2 usage or input error (missing run folder or baseline, runs not
    comparable), 3 environment error.
    """
    from .gate import gate_run

    with errors_to_exit():
        result = gate_run(run_dir, baseline, _card(pipeline), update_baseline=update_baseline)
        _print_gate(result)
        result.raise_for_failure()


@app.command()
def report(
    # Described in the docstring: Typer would list it as "RUN_DIR <list[Path]>".
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR", hidden=True)],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="HTML file [default: <run>/report.html for one run; for several, "
                      "<folder of the first run>/compare-<A>-vs-<B>.html].")] = None,
) -> None:
    """Render a run as a self-contained HTML report (tables and plots), or compare several runs side by side.

    RUN_DIR: one run folder (written by 'ssh-toolkit evaluate' or 'run'), or several to compare side by side.
    """
    from .report.html import format_comparison, report_runs

    with errors_to_exit():
        df, path = report_runs(run_dirs, out)
        typer.echo(format_comparison(df).to_string())
        typer.echo(f"report: {path.resolve()}")


@app.command()
def run(
    weights: Annotated[Literal[CHECKPOINT_KINDS], typer.Option(
        "--weights",
        help="real (download), standin or toy (generated; toy is the embedded default).")] = "toy",
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", help="WIDER-layout dataset [default: the generated sample in the workspace].")] = None,
    limit: Annotated[Optional[int], _limit("all")] = None,
    input_size: InputSize = None,
    baseline: Annotated[Optional[Path], typer.Option(
        "--baseline", metavar="FILE",
        help="Baseline to gate against [default: <card dir>/../baselines/<name>-<weights>-<size>.json, <name> "
             "being the card's name: key; for the embedded card the package's ssh_toolkit/baselines/].")]
    = None,
    report_dir: Annotated[Optional[Path], typer.Option("--report-dir", help="Run folder.")] = None,
    exec_precision: ExecPrecisions = None,
    mo_env: MoEnv = None,
    quantize: Annotated[bool, typer.Option(
        "--quantize/--no-quantize", help="Quantize the FP32 IR to INT8 (model ir-int8) with the card's quantize "
                                         "defaults, as 'ssh-toolkit quantize' does.")] = True,
    shard: ShardOpt = None,
    executor: ExecutorOpt = "local",
    scheduler: SchedulerOpt = None,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """The whole pipeline of the card: checkpoint (download, or generate --weights standin|toy), convert FP32 and
    FP16, quantize INT8, evaluate on the dataset, write the reports (Markdown, CSV/JSON, HTML) and gate against the baseline.
    Every step skips work that is already up to date. Ends with the gate's verdict (exit 1 on a regression)."""
    from .pipeline import run_pipeline

    with errors_to_exit():
        ex = _executor(executor, scheduler)  # a missing Dask is said before any work
        card = _card(pipeline)
        with ex:
            result = run_pipeline(card, _workspace(workspace), weights=weights, data_root=data_root,
                                  input_size=input_size, limit=limit, baseline=baseline, run_dir=report_dir,
                                  exec_precisions=exec_precision or ("f32", "default"),
                                  say=lambda m: typer.echo(m, err=True), mo_env=mo_env, quantize=quantize,
                                  shard=_shard(shard), executor=ex)
        _print_evaluation(result.evaluation)
        typer.echo(f"HTML report: {result.html.resolve()}")
        if result.gate is None:
            typer.echo(_missing_baseline_hint(result.baseline.resolve(), result.evaluation.run_dir.resolve()))
            _raise_for_parity(result.evaluation)  # without a gate, a failed parity verdict still fails the run
            return
        _print_gate(result.gate)
        result.gate.raise_for_failure()


def _missing_baseline_hint(baseline: Path, run_dir: Path, package_dir: Path = Path(__file__).resolve().parent) -> str:
    """How to record the missing baseline: where run looked, unless that is inside an installed package (the
    embedded card's baselines/ in site-packages), which is no place to write; then ./baselines/ and --baseline."""
    installed = bool({"site-packages", "dist-packages"} & set(package_dir.parts))
    if not (installed and baseline.is_relative_to(package_dir)):
        return f"gate: no baseline at {baseline}; record one with 'ssh-toolkit gate {run_dir} --baseline {baseline} " \
               f"--update-baseline'"
    mine = (Path("baselines") / baseline.name).resolve()
    return (f"gate: no baseline at {baseline}; record one with 'ssh-toolkit gate {run_dir} --baseline {mine} "
            f"--update-baseline', then pass it with 'ssh-toolkit run --baseline {mine}'")


@app.command()
def merge(
    # Described in the docstring: Typer would list it as "RUN_DIR <list[Path]>".
    run_dirs: Annotated[list[Path], typer.Argument(metavar="RUN_DIR", hidden=True)],
    out: Annotated[Path, typer.Option("--out", metavar="DIR", help="The merged run folder.")],
    pipeline: Pipeline = _default_pipeline(),
) -> None:
    """Merge the run folders of shards into one run whose mAP, parity, box match rate, tables and report equal
    those of a single run over the union of their images, exactly (each run folder keeps its per-image
    detections and parity sums in detections.npz).

    RUN_DIR...: run folders of disjoint --shard K/N evaluations (or earlier merges) of the same models, card,
    dataset and input size. Runs that share images or differ in models, card, dataset, selection, input size,
    runtime or versions are refused (exit 2, naming what differs). Exit 1 when an IR's parity verdict fails, as
    for evaluate.
    """
    from .merge import merge_runs

    with errors_to_exit():
        ev = merge_runs(_card(pipeline), run_dirs, out)
        s = ev.summary
        typer.echo(s.note)
        typer.echo(f"merged {len(run_dirs)} runs: {s.n_images} images ({s.dataset['selection']})")
        for name, value in s.map.items():
            typer.echo(f"map[{name}] = {value:.4f} %")
        for p in ev.parity:
            typer.echo(f"parity[{p.test}]: {_parity_verdict(p)}; box match rate "
                       f"{s.box_match[p.test].box_match_rate:.4f}")
        typer.echo(f"summary: {(ev.run_dir / 'summary.json').resolve()}")
        typer.echo(f"report: {(ev.run_dir / 'report.md').resolve()}")
        _raise_for_parity(ev)


@app.command()
def localize(
    model: Annotated[str, typer.Option(
        "--model", metavar="IR_MODEL", help="The IR model to examine: ir-fp32, ir-fp16, ir-native-fp32, "
                                            "ir-native-fp16, ir-int8, each also @bf16 (the names evaluate "
                                            "uses).")],
    image: Annotated[Optional[Path], typer.Option("--image", help="The image to run.")] = None,
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", help="A WIDER-layout dataset; its image number --index is run.")] = None,
    index: Annotated[int, typer.Option(
        "--index", min=0, metavar="N", help="With --data-root: the N-th image (0-based) in dataset order.")] = 0,
    threshold: Annotated[Optional[float], typer.Option(
        "--threshold", min=0, help="Flag layers whose max |ir - mxnet| / max |mxnet| exceeds this [default: the "
                                   "card's localize.threshold for the model's precision].")] = None,
    weights: WeightsOpt = "auto",
    input_size: InputSize = None,
    report_dir: Annotated[Optional[Path], typer.Option(
        "--report-dir", help="Where to write localize.csv/.json/.html [default: reports/runs/<time>-localize].")] = None,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """Find the first layer where an IR parts from MXNet, and the weight constant that feeds it.

    Runs MXNet with every internal output and the IR with the matching intermediate tensors added as outputs on
    one image, compares them layer by layer in MXNet's node order, and prints the table and the first layer over
    the threshold. Exit 0 whether or not a layer is flagged; 3 when MXNet's internals cannot serve as reference.
    """
    from .fileio import check_replaceable
    from .localize import localize as do_localize
    from .localize import write_localize_report

    with errors_to_exit():
        card = _card(pipeline)
        ws = _workspace(workspace)
        if (image is None) == (data_root is None):
            raise UsageError("give exactly one of --image PATH or --data-root WIDER_ROOT (with --index N)")
        if image is not None:
            if index:
                raise UsageError("--index picks an image of --data-root; with --image it has no meaning")
            if not image.is_file():
                raise UsageError(f"{image}: image not found")
            path = image
        else:
            from .data.wider import open_wider

            ds = open_wider(data_root)
            if index >= len(ds.images):
                raise UsageError(f"--index {index}: {data_root} has {len(ds.images)} images (0..{len(ds.images) - 1})")
            path = ds.image_path(ds.images[index])
        ck = _checkpoint(ws, weights)
        out_dir = report_dir or default_run_dir("localize")
        checked = check_replaceable(out_dir, "localize")  # never an evaluate run folder: that is the gate's record
        loc = do_localize(card, ck, ws, model, path, input_size=input_size, threshold=threshold)
        out = write_localize_report(out_dir, loc, checked=checked)
        typer.echo(loc.to_frame()[["depth", "node", "op", "shape", "max_abs", "max_rel", "cosine", "scaled_max_abs",
                                   "over"]].to_string(index=False))
        if loc.weights != "real":
            typer.echo(f"stand-in weights ({loc.checkpoint_kind}): a divergence here is in the conversion, not a "
                       f"statement about the real model")
        for w in loc.warnings:
            typer.echo(f"warning: {w}", err=True)
        typer.echo(loc.verdict())
        typer.echo(f"report: {out.resolve()}")


@app.command()
def benchmark(
    weights: WeightsOpt = "auto",
    data_root: Annotated[Optional[Path], typer.Option(
        "--data-root", help="WIDER-layout dataset [default: the generated sample in the workspace].")] = None,
    limit: Annotated[Optional[int], _limit("all")] = None,
    input_size: InputSize = None,
    model: Annotated[Optional[list[ModelChoice]], typer.Option(
        "--model", callback=_plain, metavar="NAME", help="Model to measure, repeatable [default: all available].")
    ] = None,
    exec_precision: ExecPrecisions = None,
    jobs: Annotated[int, typer.Option(min=0, help="OpenVINO infer requests in flight (0 = OpenVINO's choice).")] = 0,
    report_dir: Annotated[Optional[Path], typer.Option(
        "--report-dir", help="Run folder [default: reports/runs/<time>-benchmark-<weights>-<size>].")] = None,
    pipeline: Pipeline = _default_pipeline(),
    workspace: WorkspaceOpt = None,
) -> None:
    """One table with a row per model variant (mxnet, ir-fp32, ir-fp32@bf16, ir-fp16, ir-int8, ...): mAP on the
    data, mAP drop vs MXNet, seconds per image, images per second and speed-up over ir-fp32, every model inferred
    afresh through evaluate's runners. Writes benchmark.csv/.json and report.md into a run folder."""
    from .benchmark import benchmark as do_benchmark
    from .benchmark import format_table

    with errors_to_exit():
        card = _card(pipeline)
        ws = _workspace(workspace)
        ck = _checkpoint(ws, weights)
        size = card.resolve_input_size(input_size)
        root = _data_root(ws, data_root)
        irs = _available_irs(card, ck, ws, size, model)
        b = do_benchmark(card, ck, irs, root, ws, input_size=size, limit=limit, models=model,
                         exec_precisions=exec_precision or ("f32", "default"), run_dir=report_dir, jobs=jobs,
                         say=lambda m: typer.echo(m, err=True))
        from .report.markdown import standin_banner

        typer.echo(standin_banner(ck.weights, ck.kind, card.reference_map))
        typer.echo(format_table(b.table))
        typer.echo(f"table: {(b.run_dir / 'benchmark.csv').resolve()}")
        typer.echo(f"report: {(b.run_dir / 'report.md').resolve()}")


@app.command()
def doctor(
    mo_env: MoEnv = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """What this machine computes with: OpenVINO, numpy, MXNet and Python versions; the Model Optimizer
    environment and its state (ready, missing, half-installed, wrong version); the CPU and the flags that change
    results (avx512_bf16, AMX, VNNI); the runtime's default inference precision, in general and for each IR in
    the workspace. Changes nothing."""
    import json

    from .doctor import diagnose

    with errors_to_exit():
        rep = diagnose(_workspace(workspace), mo_env)
        typer.echo(json.dumps(rep.to_json(), indent=2) if as_json else "\n".join(rep.lines()))


def main() -> None:
    """Run the command line with the toolkit's Ctrl-C and SIGTERM handling (see ``interrupts``). The console
    script enters through ``ssh_toolkit.__main__``, which installs that handling before this module's imports."""
    from .interrupts import main as run_with_signal_handling

    run_with_signal_handling(app)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
