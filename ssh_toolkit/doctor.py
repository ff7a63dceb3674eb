"""``ssh-toolkit doctor``: what this machine will compute with, as one record.

The runtime's versions, the Model Optimizer environment and its state, the CPU and the flags that change
results (on a CPU with avx512_bf16 or AMX the OpenVINO CPU plugin runs an FP32 IR in bf16 unless told
otherwise), and the inference precision the runtime picks by default: in general
(``core.get_property("CPU", "INFERENCE_PRECISION_HINT")``) and, for each IR in the workspace, what the compiled
model reads back. Nothing is created or changed: the MO environment is only inspected.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from .legacy_env import EnvState, inspect
from .workspace import Workspace

# The flags that decide how the CPU plugin computes: bf16 by default with avx512_bf16 / AMX, int8 dot products.
RESULT_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "avx512f")
DEVICE = "CPU"


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, dict[str, bool]]:
    """(model name, {flag: present}) of the first processor in ``cpuinfo``."""
    model, flags = platform.processor() or "unknown", set()
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return model, {f: False for f in RESULT_FLAGS}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model in ("unknown", platform.processor()):
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return model, {f: f in flags for f in RESULT_FLAGS}


@dataclass
class IRPrecision:
    xml: Path
    default: str | None  # what the compiled model reads back with no hint
    pinned_f32: str | None  # ... with INFERENCE_PRECISION_HINT=f32 (what parity runs)
    error: str | None = None


@dataclass
class DoctorReport:
    runtime: dict[str, str]
    mo_env: EnvState
    cpu_model: str
    cpu_flags: dict[str, bool]
    default_precision: str | None  # core.get_property("CPU", "INFERENCE_PRECISION_HINT")
    irs: list[IRPrecision] = field(default_factory=list)
    device: str = DEVICE

    def to_json(self) -> dict:
        return {
            "runtime": self.runtime, "mo_env": self.mo_env.to_json(), "cpu": {"model": self.cpu_model,
                                                                               "flags": self.cpu_flags},
            "device": self.device, "default_precision": self.default_precision,
            "irs": [{"xml": str(i.xml), "default": i.default, "pinned_f32": i.pinned_f32, "error": i.error}
                    for i in self.irs],
        }

    def lines(self) -> list[str]:
        rt = self.runtime
        out = [f"runtime: OpenVINO {rt.get('openvino', 'missing')}, numpy {rt.get('numpy', 'missing')}, "
               f"mxnet {rt.get('mxnet', 'missing')}, Python {rt.get('python')}"]
        e = self.mo_env
        whose = "managed" if e.managed else "yours, --mo-env / $SSH_TOOLKIT_MO_ENV"
        line = f"Model Optimizer environment ({whose}): {e.path}: {e.state}"
        if e.env is not None:
            p = e.env.packages
            line += (f" (Model Optimizer {e.env.mo_version}; Python {e.env.python_version}, openvino-dev "
                     f"{p.get('openvino-dev')}, numpy {p.get('numpy')}, mxnet {p.get('mxnet')})")
        elif e.state == "missing" and e.managed:
            line += " (created on first 'ssh-toolkit convert' or 'run')"
        elif e.reason:
            line += f" ({e.reason})"
        out.append(line)
        flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in self.cpu_flags.items())
        out.append(f"CPU: {self.cpu_model}; {flags}")
        out.append(f"default inference precision on {self.device}: {self.default_precision or '?'}"
                   + (" (an FP32 IR runs in bf16 unless INFERENCE_PRECISION_HINT=f32 is set)"
                      if self.default_precision == "bf16" else ""))
        for i in self.irs:
            if i.error:
                out.append(f"IR {i.xml}: {i.error}")
            else:
                out.append(f"IR {i.xml}: runs in {i.default} by default, {i.pinned_f32} when pinned to f32")
        return out


def runtime_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("openvino", "numpy", "mxnet"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def workspace_irs(ws: Workspace) -> list[Path]:
    """Model Optimizer's IRs (``ir/<kind>-<size>/<P>/``) and the native route's (``ir/<kind>-<size>/native/<P>/``)."""
    ir = ws.root / "ir"
    return sorted(p.resolve() for pattern in ("*/*/*.xml", "*/native/*/*.xml") for p in ir.glob(pattern))


def ir_precision(core, xml: Path, device: str = DEVICE) -> IRPrecision:
    from .errors import BackendError
    from .runners.openvino import PARITY_CONFIG, precision_name, read_model, reason

    try:
        model = read_model(core, xml)
        default = precision_name(core.compile_model(model, device).get_property("INFERENCE_PRECISION_HINT"))
        pinned = precision_name(core.compile_model(model, device, PARITY_CONFIG)
                                .get_property("INFERENCE_PRECISION_HINT"))
        return IRPrecision(xml, default, pinned)
    except BackendError as e:
        return IRPrecision(xml, None, None, str(e).removeprefix(f"{xml}: "))
    except RuntimeError as e:
        return IRPrecision(xml, None, None, f"OpenVINO cannot compile it for {device}: {reason(e)}")


def diagnose(ws: Workspace | None = None, mo_env: Path | None = None, irs: list[Path] | None = None,
             cpuinfo: str | Path = "/proc/cpuinfo") -> DoctorReport:
    """The doctor's record for this machine (the workspace's IRs, or ``irs``)."""
    model, flags = cpu_info(cpuinfo)
    default = None
    found: list[IRPrecision] = []
    try:
        from openvino import Core

        from .runners.openvino import precision_name

        core = Core()
        default = precision_name(core.get_property(DEVICE, "INFERENCE_PRECISION_HINT"))
        paths = list(irs) if irs is not None else (workspace_irs(ws) if ws is not None else [])
        found = [ir_precision(core, p) for p in paths]
    except ImportError:
        pass
    return DoctorReport(runtime_versions(), inspect(mo_env), model, flags, default, found)
