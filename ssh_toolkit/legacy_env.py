"""Model Optimizer (and the Accuracy Checker) in a separate, managed legacy environment.

The toolkit runs on the current OpenVINO runtime, but the only Model Optimizer that reads MXNet is the one of
``openvino-dev[mxnet]==2023.3.0`` (the MXNet frontend was removed in 2024.6, openvino-dev in 2025.0), and it
cannot share an environment with OpenVINO 2026. So the toolkit creates, on first use, a virtual environment
with just that under ``$SSH_TOOLKIT_HOME/envs/mo-2023.3.0/`` and runs MO as a subprocess of its Python.

Rules:

- **One builder at a time.** Creation holds an exclusive ``fcntl`` lock (``envs/mo-2023.3.0.lock``); a second
  process waits for it, then reuses what the first built.
- **No half environment at the final path.** The environment is built in a temporary folder beside it; the
  completion marker (``ssh-toolkit-env.json``, holding the versions checked by running the environment's own
  Python) is written last, then the folder is renamed into place. A folder without a valid marker, or whose
  check fails (wrong version, its Python deleted), is rebuilt; a temporary folder left by a killed build is
  removed by the next build.
- **An environment of yours** (``--mo-env PATH`` or ``$SSH_TOOLKIT_MO_ENV``), for machines without a package
  index: it is checked (MO 2023.3 with the MXNet frontend) and never modified.
- **No package index:** one line saying so and how to supply an environment, exit 3, nothing left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from .errors import EnvironmentProblem, UsageError

ENV_NAME = "mo-2023.3.0"
MO_SERIES = "2023.3"  # an environment of the user's must hold a Model Optimizer of this release
# What the managed environment installs. numpy 1.23.5 is the last numpy that mxnet 1.9.1 imports unpatched (it
# uses np.bool, removed in 1.24) and the one openvino-dev 2023.3 was tested with. opencv-python >= 4.12 and
# scipy >= 1.16 need a newer numpy: pinned so that pip does not download several releases of each (70 MB and
# 35 MB apiece) before finding one that fits.
REQUIREMENTS = ("openvino-dev[mxnet]==2023.3.0", "mxnet==1.9.1", "numpy==1.23.5", "opencv-python<4.12",
                "scipy<1.16")
EXPECTED = {"openvino-dev": "2023.3.0", "mxnet": "1.9.1", "numpy": "1.23.5"}
MARKER = "ssh-toolkit-env.json"
ENV_VAR = "SSH_TOOLKIT_MO_ENV"
HOME_VAR = "SSH_TOOLKIT_HOME"

# Run by the environment's own Python: what it holds, and whether MO's MXNet frontend and the Accuracy Checker
# import. Prints one JSON object.
PROBE = r"""
import json, sys, warnings
from importlib import metadata
warnings.simplefilter("ignore")
out = {"python": sys.version.split()[0], "packages": {}, "problems": []}
for dist in ("openvino-dev", "openvino", "numpy", "mxnet"):
    try:
        out["packages"][dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
        out["packages"][dist] = None
try:
    from openvino.tools.mo.utils.version import get_simplified_mo_version, get_version
    out["mo"] = get_version()
    out["mo_release"] = get_simplified_mo_version()
except Exception as e:
    out["problems"].append(f"Model Optimizer does not import ({type(e).__name__}: {e})")
try:
    import mxnet
    import openvino.tools.mo.front.mxnet.loader
except Exception as e:
    out["problems"].append(f"Model Optimizer's MXNet frontend does not import ({type(e).__name__}: {e})")
try:
    import openvino.tools.accuracy_checker.metrics.detection
except Exception as e:
    out["problems"].append(f"the Accuracy Checker does not import ({type(e).__name__}: {e})")
print(json.dumps(out))
"""


def toolkit_home() -> Path:
    """``$SSH_TOOLKIT_HOME``, else the user cache folder: ``$XDG_CACHE_HOME/ssh-toolkit`` or ``~/.cache/...``."""
    if os.environ.get(HOME_VAR):
        return Path(os.environ[HOME_VAR]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "ssh-toolkit"


def managed_path(home: Path | None = None) -> Path:
    return (home or toolkit_home()) / "envs" / ENV_NAME


def env_python(path: Path) -> Path:
    return path / "bin" / "python"


@dataclass(frozen=True)
class LegacyEnv:
    """A checked Model Optimizer environment: where it is and what it holds."""

    path: Path
    managed: bool  # created by the toolkit (rebuilt when broken) or the user's (never modified)
    python_version: str
    packages: dict[str, str | None]  # openvino-dev, openvino, numpy, mxnet
    mo_version: str  # Model Optimizer's full version string, e.g. 2023.3.0-13775-ceeafaf64f3-releases/2023/3
    built: dict = field(default_factory=dict, compare=False)  # the marker's creation facts (managed only)

    @property
    def python(self) -> Path:
        return env_python(self.path)

    def mo_command(self, args: list[str]) -> list[str]:
        return [str(self.python), "-m", "openvino.tools.mo", *args]

    def subprocess_env(self) -> dict[str, str]:
        return _clean_env()

    def record(self) -> dict:
        """What a conversion record says about the environment that made the IR."""
        return {"path": str(self.path), "managed": self.managed, "python": self.python_version,
                "mo": self.mo_version, **{k: v for k, v in self.packages.items() if v is not None}}


# ---- checking ---------------------------------------------------------------------------------------------

class EnvCheckFailed(Exception):
    """The environment at ``path`` is not usable; ``state`` is missing | half-installed | wrong version."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


def probe(path: Path, timeout: float = 300) -> dict:
    """Run the environment's own Python on :data:`PROBE`; EnvCheckFailed when it cannot run at all."""
    python = env_python(path)
    if not path.is_dir():
        raise EnvCheckFailed("missing", f"{path}: no such folder")
    if not python.exists():  # also a dangling symlink: the Python it was made from was removed
        raise EnvCheckFailed("half-installed", f"{python}: missing (or the Python it points to was removed)")
    try:
        proc = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, timeout=timeout,
                              env=_clean_env())
    except OSError as e:
        raise EnvCheckFailed("half-installed", f"{python}: cannot run ({e.strerror or e})") from None
    except subprocess.TimeoutExpired:
        raise EnvCheckFailed("half-installed", f"{python}: the check did not finish in {timeout:.0f} s") from None
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EnvCheckFailed("half-installed", f"{python}: the check failed ({err})") from None


def check(path: Path, *, managed: bool) -> LegacyEnv:
    """A LegacyEnv for ``path`` after running its Python; EnvCheckFailed saying what is wrong."""
    info = probe(path)
    pkgs = info.get("packages", {})
    mo = info.get("mo") or ""
    if managed:
        wrong = [f"{d} {pkgs.get(d)} (expected {v})" for d, v in EXPECTED.items() if pkgs.get(d) != v]
        if wrong:
            missing = all(pkgs.get(d) is None for d in EXPECTED)
            raise EnvCheckFailed("half-installed" if missing else "wrong version", f"{path}: holds {', '.join(wrong)}")
    elif not (pkgs.get("openvino-dev") or "").startswith(MO_SERIES + "."):
        raise EnvCheckFailed("wrong version", f"{path}: holds openvino-dev {pkgs.get('openvino-dev')}, "
                                              f"expected {MO_SERIES}.x (the last Model Optimizer that reads MXNet)")
    if info.get("problems"):
        raise EnvCheckFailed("half-installed" if managed else "wrong version", f"{path}: {info['problems'][0]}")
    if not mo.startswith(MO_SERIES):
        raise EnvCheckFailed("wrong version", f"{path}: Model Optimizer {mo or '?'}, expected {MO_SERIES}")
    return LegacyEnv(path, managed, info["python"], dict(pkgs), mo)


def _read_marker(path: Path) -> dict | None:
    try:
        data = json.loads((path / MARKER).read_text())
        return data if isinstance(data, dict) and data.get("requirements") == list(REQUIREMENTS) else None
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class EnvState:
    """What ``doctor`` reports: ready | missing | half-installed | wrong version, and why."""

    path: Path
    managed: bool
    state: str
    reason: str = ""
    env: LegacyEnv | None = None

    def to_json(self) -> dict:
        d = {"path": str(self.path), "managed": self.managed, "state": self.state, "reason": self.reason}
        if self.env is not None:
            d.update(python=self.env.python_version, mo=self.env.mo_version, packages=self.env.packages)
        return d


def inspect(explicit: Path | None = None, home: Path | None = None) -> EnvState:
    """The state of the environment ``convert`` would use, without creating or changing anything."""
    path, managed = _choose(explicit, home)
    if managed and path.exists() and _read_marker(path) is None:
        return EnvState(path, managed, "half-installed", f"{path}: no completion marker ({MARKER})")
    try:
        return EnvState(path, managed, "ready", env=check(path, managed=managed))
    except EnvCheckFailed as e:
        return EnvState(path, managed, e.state, e.reason)


# ---- choosing and creating --------------------------------------------------------------------------------

def _choose(explicit: Path | None, home: Path | None) -> tuple[Path, bool]:
    if explicit is not None:
        return Path(explicit).expanduser().absolute(), False
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser().absolute(), False
    return managed_path(home).absolute(), True


_CHECKED: dict[Path, LegacyEnv] = {}  # environments checked by this process (a check costs ~2 s)


def ensure_mo_env(explicit: Path | None = None, *, home: Path | None = None,
                  say: Callable[[str], None] | None = None) -> LegacyEnv:
    """The Model Optimizer environment to use: the user's (``explicit`` or ``$SSH_TOOLKIT_MO_ENV``), checked
    and never modified; else the managed one, created or rebuilt when needed."""
    say = say or _say
    path, managed = _choose(explicit, home)
    if path in _CHECKED:
        return _CHECKED[path]
    if not managed:
        origin = "--mo-env" if explicit is not None else f"${ENV_VAR}"
        if not path.is_dir():
            raise UsageError(f"{path}: no such folder (given with {origin}); pass a virtual environment holding "
                             f"{REQUIREMENTS[0]}")
        try:
            env = check(path, managed=False)
        except EnvCheckFailed as e:
            raise EnvironmentProblem(f"{e.reason}; the environment given with {origin} is not used nor modified: "
                                     f"it needs {' '.join(REQUIREMENTS)}") from None
    else:
        env = _ensure_managed(path, say)
    _CHECKED[path] = env
    return env


def _ensure_managed(path: Path, say: Callable[[str], None]) -> LegacyEnv:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EnvironmentProblem(f"{path.parent}: cannot create the environments folder ({e.strerror})") from None
    with _lock(path, say):
        if _read_marker(path) is not None:
            try:
                return check(path, managed=True)
            except EnvCheckFailed as e:
                say(f"Model Optimizer environment {path} is {e.state} ({e.reason}): rebuilding it")
        elif path.exists():
            say(f"Model Optimizer environment {path} is half-installed (no completion marker): rebuilding it")
        return _build(path, say)


@contextlib.contextmanager
def _lock(path: Path, say: Callable[[str], None]) -> Iterator[None]:
    lock = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise EnvironmentProblem(f"{lock}: cannot open the lock file ({e.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another ssh-toolkit process that is creating {path} ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale(path: Path) -> None:
    """Temporary folders of builds that were killed (the lock is held, so none is in progress) and the old
    environment being replaced."""
    for p in path.parent.glob(_tmp_prefix(path) + "*.tmp"):
        shutil.rmtree(p, ignore_errors=True)
    if path.exists():
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
        shutil.rmtree(old, ignore_errors=True)


def _clean_env() -> dict[str, str]:
    """The environment for the legacy Python: without this process's virtualenv and Python settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


INDEX_TROUBLE = re.compile(r"(NewConnectionError|Failed to establish a new connection|Could not fetch URL|"
                           r"No matching distribution found|Max retries exceeded|Temporary failure in name "
                           r"resolution|Connection refused|Network is unreachable|ProxyError|SSLError)")


def _build(path: Path, say: Callable[[str], None]) -> LegacyEnv:
    say(f"Model Optimizer environment: installing {' '.join(REQUIREMENTS)} into {path} (once; MXNet conversion "
        f"needs Model Optimizer 2023.3, which cannot share an environment with the OpenVINO 2026 runtime)")
    _remove_stale(path)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the environment is an ordinary folder
    start = time.perf_counter()
    try:
        _run_step([sys.executable, "-m", "venv", str(tmp)], "create the virtual environment", tmp, say)
        _pip_install(tmp, say)
        try:
            env = check(tmp, managed=True)
        except EnvCheckFailed as e:
            raise EnvironmentProblem(f"{path}: the new environment fails its check: {e.reason}") from None
        _fix_scripts(tmp, path)
        from .fileio import write_json

        built = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": round(time.perf_counter() - start, 1)}
        write_json(tmp / MARKER, {"requirements": list(REQUIREMENTS), "python": env.python_version,
                                  "mo": env.mo_version, "packages": env.packages, **built})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    say(f"Model Optimizer environment ready: {path} (Model Optimizer {env.mo_version}, "
        f"{time.perf_counter() - start:.0f} s)")
    return LegacyEnv(path, True, env.python_version, env.packages, env.mo_version, built)


def _run_step(cmd: list[str], what: str, tmp: Path, say: Callable[[str], None]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env())
    except OSError as e:
        raise EnvironmentProblem(f"{tmp}: cannot {what} ({e.strerror or e})") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise EnvironmentProblem(f"cannot {what} for Model Optimizer ({' '.join(cmd[:3])} ...: {last})")


PROGRESS = re.compile(r"^(Collecting|Downloading|Using cached|Processing|Installing collected|Successfully)")


def _pip_install(tmp: Path, say: Callable[[str], None]) -> None:
    cmd = [str(env_python(tmp)), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
           *REQUIREMENTS]
    lines: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_clean_env())
    except OSError as e:
        raise EnvironmentProblem(f"{tmp}: cannot run pip ({e.strerror or e})") from None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            lines.append(line)
            if PROGRESS.match(line.strip()):
                say(f"  pip: {line.strip()}")
        code = proc.wait()
    finally:  # Ctrl-C: stop pip before the temporary folder is removed
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if code == 0:
        return
    text = "\n".join(lines)
    errors = [ln.strip() for ln in lines if ln.strip().startswith("ERROR:")]
    last = (errors or [ln.strip() for ln in lines if ln.strip()] or ["no output"])[-1]
    how = (f"on a machine without a package index, make the environment elsewhere (python3.11 -m venv E && "
           f"E/bin/pip install {' '.join(repr(r) for r in REQUIREMENTS)}) and pass it with --mo-env E or "
           f"${ENV_VAR}")
    if INDEX_TROUBLE.search(text):
        raise EnvironmentProblem(f"cannot install Model Optimizer: the package index is unreachable or lacks "
                                 f"{REQUIREMENTS[0]} (pip: {last}); {how}")
    raise EnvironmentProblem(f"cannot install Model Optimizer: pip failed with exit {code} ({last}); {how}")


def _fix_scripts(tmp: Path, final: Path) -> None:
    """A virtual environment's scripts name its folder; rename them from the temporary to the final one."""
    old, new = str(tmp), str(final)
    for f in (tmp / "bin").iterdir():
        if f.is_symlink() or not f.is_file():
            continue
        try:
            text = f.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if old in text:
            mode = f.stat().st_mode
            f.write_text(text.replace(old, new))
            os.chmod(f, mode)
    cfg = tmp / "pyvenv.cfg"
    if cfg.is_file():
        cfg.write_text(cfg.read_text().replace(old, new))


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
