"""Model Optimizer conversion of an MXNet checkpoint to FP32/FP16 IR, with a record and an up-to-date check."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .card import ModelCard
from .errors import BackendError, ConversionError, InputDataError, UsageError
from .fileio import atomic_dir, sha256_file, write_json
from .legacy_env import LegacyEnv, ensure_mo_env
from .model.outputs import canonical_name
from .report.markdown import versions
from .run_record import ir_model_name
from .workspace import Checkpoint, Workspace

RECORD = "conversion.json"


@dataclass(frozen=True)
class ConvertedModel:
    """One IR on disk and how it was made."""

    directory: Path
    prefix: str
    precision: str
    input_size: int
    checkpoint_kind: str
    weights: str  # "real" | "standin"
    command: tuple[str, ...]
    mo_version: str
    seconds: float
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]
    sha256: dict[str, str]
    fingerprint: str
    versions: dict[str, str] = field(default_factory=dict)  # python, numpy, mxnet, openvino, ... at conversion
    # The Model Optimizer environment that made it: path, python, mo, openvino-dev, openvino, numpy, mxnet.
    mo_env: dict[str, object] = field(default_factory=dict)
    route: str = "mo"  # mo | native (records written before the native route existed are Model Optimizer's)
    dynamic: bool = False  # native route only: height and width are dynamic (input_size: the size it was checked at)
    reused: bool = False  # True when convert() found it up to date (not saved in the record)

    @property
    def xml(self) -> Path:
        return self.directory / f"{self.prefix}.xml"

    @property
    def bin(self) -> Path:
        return self.directory / f"{self.prefix}.bin"

    @property
    def model_name(self) -> str:
        return ir_model_name(self.precision, route=self.route)

    def convert_command(self) -> str:
        """The command that converts this IR again."""
        route = "" if self.route == "mo" else f" --route {self.route}" + (" --dynamic-shape" if self.dynamic else "")
        return (f"ssh-toolkit convert --force --weights {self.checkpoint_kind} --input-size {self.input_size} "
                f"--precision {self.precision}{route}")

    def check_files(self) -> tuple[str, str]:
        """The sha256 of the .xml and .bin, checked against the ones conversion.json recorded: InputDataError
        naming the file and the command that converts it again when one is missing or changed since."""
        hashes = []
        for kind, path in (("xml", self.xml), ("bin", self.bin)):
            if not path.is_file():
                raise InputDataError(f"{path}: missing; run '{self.convert_command()}'")
            digest = sha256_file(path)
            if digest != self.sha256.get(kind):
                raise InputDataError(f"{path}: changed since conversion (sha256 differs from {RECORD}); run "
                                     f"'{self.convert_command()}'")
            hashes.append(digest)
        return hashes[0], hashes[1]

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("directory")
        d.pop("reused")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> "ConvertedModel":
        directory = Path(directory)
        rec = directory / RECORD
        try:
            d = json.loads(rec.read_text())
            check_record_types(cls, d)
            d["command"] = tuple(d["command"])
            return cls(directory=directory, **d)
        except FileNotFoundError:
            raise InputDataError(f"{rec}: no conversion record; run 'ssh-toolkit convert' first") from None
        except (ValueError, TypeError, KeyError) as e:
            raise InputDataError(f"{rec}: corrupt conversion record ({e})") from None


def check_record_types(cls, d: object) -> None:
    """TypeError naming the key when the record ``d`` (conversion.json) is not an object or one of its keys has
    another JSON type than the field of ``cls`` it fills (an edited record is refused, not trusted)."""
    import typing
    from dataclasses import fields

    if not isinstance(d, dict):
        raise TypeError(f"expected a JSON object, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    checks = {str: (lambda v: isinstance(v, str), "a string"),
              int: (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
              float: (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number"),
              bool: (lambda v: isinstance(v, bool), "true or false"),
              dict: (lambda v: isinstance(v, dict), "a JSON object"),
              tuple: (lambda v: isinstance(v, list), "a list")}
    for f in fields(cls):
        if f.name not in d:
            continue
        hint = hints[f.name]
        kind = typing.get_origin(hint) or hint
        if kind not in checks:
            continue
        ok, what = checks[kind]
        value = d[f.name]
        if not ok(value):
            raise TypeError(f"key '{f.name}': expected {what}, got {value!r}")
        if kind is tuple and (args := typing.get_args(hint)) and args[0] in checks:
            ok, what = checks[args[0]]
            if not all(ok(v) for v in value):
                raise TypeError(f"key '{f.name}': expected a list of {what.split(' ', 1)[1]}s, got {value!r}")
    if not all(isinstance(v, str) for v in d.get("sha256", {}).values()):
        raise TypeError(f"key 'sha256': expected strings, got {d['sha256']!r}")


def mo_version(mo_env: str | Path | None = None) -> str:
    """The version of the Model Optimizer ``convert`` uses (from its legacy environment, created if needed)."""
    return ensure_mo_env(Path(mo_env) if mo_env else None).mo_version


def mo_arguments(card: ModelCard, checkpoint: Checkpoint, precision: str, input_size: int) -> list[str]:
    """Model Optimizer arguments, without the output directory (which is not part of the fingerprint)."""
    shape = ",".join(str(d) for d in card.input.shape(input_size))
    return [
        f"--input_model={checkpoint.params_path}",
        f"--input_shape=[{shape}]",
        *card.mo_args,
        f"--model_name={checkpoint.prefix}",
        # 2023.3 compresses weights to FP16 by default; FP32 must say so explicitly.
        f"--compress_to_fp16={precision == 'FP16'}",
    ]


def check_checkpoint_naming(checkpoint: Checkpoint) -> None:
    """Model Optimizer finds the symbol file from ``<prefix>-<epoch:04d>.params``; check before calling it."""
    if not checkpoint.params_path.is_file():
        raise InputDataError(f"{checkpoint.params_path}: missing; Model Optimizer needs "
                             f"'{checkpoint.prefix}-{checkpoint.epoch:04d}.params'")
    if not checkpoint.symbol_path.is_file():
        raise InputDataError(f"{checkpoint.symbol_path}: missing; Model Optimizer looks for the symbol file "
                             f"'{checkpoint.prefix}-symbol.json' beside '{checkpoint.params_path.name}'")


def _fingerprint(checkpoint: Checkpoint, args: list[str], version: str) -> str:
    h = hashlib.sha256()
    # The files as they are now (not the sha256 checkpoint.json recorded): an edited checkpoint is never "up to date".
    h.update(sha256_file(checkpoint.params_path).encode())
    h.update(sha256_file(checkpoint.symbol_path).encode())
    # Paths differ between machines and clones; the checkpoint content is covered by the hashes above.
    h.update(json.dumps([a for a in args if not a.startswith("--input_model=")]).encode())
    h.update(version.encode())
    return h.hexdigest()


def _up_to_date(directory: Path, fingerprint: str) -> ConvertedModel | None:
    if not (directory / RECORD).is_file():
        return None
    try:
        done = ConvertedModel.load(directory)
    except InputDataError:
        return None
    if done.fingerprint != fingerprint or not done.xml.is_file() or not done.bin.is_file():
        return None
    if sha256_file(done.xml) != done.sha256.get("xml") or sha256_file(done.bin) != done.sha256.get("bin"):
        return None
    return done


def _error_line(log: str) -> str:
    """MO's own error headline plus the framework exception under it, without FAQ boilerplate."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    tagged = [re.sub(r"\[ [A-Z ]*ERROR \]", "", ln).strip() for ln in lines if re.search(r"\[ [A-Z ]*ERROR \]", ln)]
    tagged = [t.split(": Traceback")[0] for t in tagged if t and not t.startswith("For more information")]
    exc = [ln for ln in lines if re.match(r"^\w*(Error|Exception)\b.*:", ln)]
    parts = tagged[:1] + exc[-1:]
    return ": ".join(parts) if parts else (lines[-1] if lines else "no output")


def _ir_io(xml: Path) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    from openvino import Core

    from .runners.openvino import read_model

    try:
        model = read_model(Core(), xml)
    except BackendError as e:
        raise ConversionError(f"the OpenVINO runtime cannot read the IR Model Optimizer wrote: {e}") from None
    ins = {i.get_any_name(): list(i.get_partial_shape().get_shape()) for i in model.inputs}
    outs = {o.get_any_name(): list(o.get_partial_shape().get_shape()) for o in model.outputs}
    return ins, outs


def convert(card: ModelCard, checkpoint: Checkpoint, workspace: Workspace, precision: str,
            input_size: int | None = None, *, force: bool = False,
            mo_env: str | Path | LegacyEnv | None = None, route: str = "mo", dynamic: bool = False) -> ConvertedModel:
    """Convert ``checkpoint`` to an IR of ``precision`` under the workspace; skip if already up to date.

    Model Optimizer runs from its legacy environment (see :mod:`ssh_toolkit.legacy_env`): ``mo_env`` is an
    existing environment to use (checked, never modified), else ``$SSH_TOOLKIT_MO_ENV``, else the managed one,
    created on first use. ``route="native"`` translates the checkpoint on the current OpenVINO instead, without
    Model Optimizer and without MXNet (:mod:`ssh_toolkit.native`); ``dynamic`` (native only) leaves height and
    width dynamic.
    """
    if precision not in card.precisions:
        raise InputDataError(f"{card.path}: precision {precision!r} not in convert.precisions {card.precisions}")
    if route == "native":
        from .native.convert import convert_native

        return convert_native(card, checkpoint, workspace, precision, input_size, force=force, dynamic=dynamic)
    if route != "mo":
        raise UsageError(f"--route {route!r}: expected mo or native")
    if dynamic:
        raise UsageError("--dynamic-shape needs --route native (Model Optimizer's IRs have a fixed input size)")
    size = card.resolve_input_size(input_size)
    check_checkpoint_naming(checkpoint)
    args = mo_arguments(card, checkpoint, precision, size)
    env = mo_env if isinstance(mo_env, LegacyEnv) else ensure_mo_env(Path(mo_env) if mo_env else None)
    version = env.mo_version
    fingerprint = _fingerprint(checkpoint, args, version)
    target = workspace.ir_dir(checkpoint.kind, size, precision)
    if not force and (done := _up_to_date(target, fingerprint)):
        return replace(done, reused=True)

    with atomic_dir(target, kind="ir") as tmp:
        command = env.mo_command([*args, f"--output_dir={tmp}"])
        start = time.perf_counter()
        try:
            proc = subprocess.run(command, capture_output=True, text=True, env=env.subprocess_env())
        except OSError as e:
            raise ConversionError(f"{env.python}: cannot run Model Optimizer ({e.strerror or e})") from None
        seconds = time.perf_counter() - start
        log = proc.stdout + proc.stderr
        (tmp / "mo.log").write_text(log)
        xml = tmp / f"{checkpoint.prefix}.xml"
        if proc.returncode != 0 or not xml.is_file():
            tail = "\n".join(log.strip().splitlines()[-20:])
            # Keep the full log (not the failed IR) where the user can read it.
            failed_log = target.parent / f"{target.name}-mo-failed.log"
            failed_log.write_text(log)
            raise ConversionError(f"Model Optimizer failed on {checkpoint.params_path} ({precision}, exit "
                                  f"{proc.returncode}): {_error_line(log)} (full log: {failed_log})", detail=tail)
        ins, outs = _ir_io(xml)
        missing = [n for n in card.output_names if n not in {canonical_name(o) for o in outs}]
        if missing:
            raise ConversionError(f"{xml.name}: the IR lacks output(s) {missing}; it has {sorted(outs)}")
        done = ConvertedModel(
            directory=target, prefix=checkpoint.prefix, precision=precision, input_size=size,
            checkpoint_kind=checkpoint.kind, weights=checkpoint.weights,
            command=tuple(["mo", *args, f"--output_dir={target}"]), mo_version=version,
            seconds=round(seconds, 3), inputs=ins, outputs=outs,
            sha256={"xml": sha256_file(xml), "bin": sha256_file(xml.with_suffix(".bin"))},
            fingerprint=fingerprint, versions=versions(), mo_env=env.record(),
        )
        write_json(tmp / RECORD, done.to_json())
    return done


def convert_all(card: ModelCard, checkpoint: Checkpoint, workspace: Workspace,
                precisions: tuple[str, ...] | None = None, input_size: int | None = None,
                *, force: bool = False, mo_env: str | Path | LegacyEnv | None = None,
                route: str = "mo") -> list[ConvertedModel]:
    return [convert(card, checkpoint, workspace, p, input_size, force=force, mo_env=mo_env, route=route)
            for p in precisions or card.precisions]
