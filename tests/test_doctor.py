"""``ssh-toolkit doctor`` against the real machine: versions, MO environment state, CPU flags, precisions."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ssh_toolkit.cli import app
from ssh_toolkit.doctor import cpu_info, diagnose
from ssh_toolkit.workspace import Workspace

CPUINFO = Path("/proc/cpuinfo").read_text()


def _flag(name):
    flags = next(line for line in CPUINFO.splitlines() if line.startswith("flags")).split(":", 1)[1].split()
    return name in flags


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path):
    model, flags = cpu_info()
    assert model and model in CPUINFO
    assert flags["avx512_bf16"] == _flag("avx512_bf16") and flags["amx_tile"] == _flag("amx_tile")
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse avx512f amx_bf16 amx_tile\n\n"
                    "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    assert cpu_info(fake) == ("Test CPU 9000", {"avx512_bf16": False, "amx_bf16": True, "amx_tile": True,
                                                "avx512_vnni": False, "avx512f": True})


@pytest.mark.slow  # a subprocess, Model Optimizer or the legacy environment
def test_default_precision_agrees_with_the_cpu_flags_and_each_ir_reads_it_back(standin_ws, mo_env):
    ws, _, irs = standin_ws
    rep = diagnose(ws)
    import openvino

    assert rep.runtime["openvino"] == openvino.__version__.split("-")[0] and rep.runtime["openvino"].startswith("2026.4")
    assert rep.runtime["numpy"] == "1.26.4" and rep.runtime["mxnet"] == "1.9.1"
    bf16_cpu = _flag("avx512_bf16") or _flag("amx_bf16")
    assert rep.default_precision == ("bf16" if bf16_cpu else "f32")
    assert {i.xml for i in rep.irs} == {ir.xml.resolve() for ir in irs.values()}
    for i in rep.irs:
        assert i.error is None and i.default == rep.default_precision and i.pinned_f32 == "f32"
    assert rep.mo_env.state == "ready" and rep.mo_env.env.mo_version == mo_env.mo_version
    text = "\n".join(rep.lines())
    assert f"default inference precision on CPU: {rep.default_precision}" in text
    assert f"{mo_env.path}: ready (Model Optimizer 2023.3.0" in text


def test_doctor_cli_reports_a_missing_env_and_an_unreadable_ir_without_creating_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("SSH_TOOLKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SSH_TOOLKIT_MO_ENV", raising=False)
    ws = Workspace(tmp_path / "ws")
    bad = ws.ir_dir("toy", 640, "FP32") / "sshb.xml"
    bad.parent.mkdir(parents=True)
    bad.write_text('<?xml version="1.0"?>\n<net name="x" version="11"><layers><layer id="0"')
    bad.with_suffix(".bin").write_bytes(b"")
    r = CliRunner().invoke(app, ["doctor", "-w", str(ws.root)])
    assert r.exit_code == 0, r.output
    assert f"{tmp_path / 'home' / 'envs' / 'mo-2023.3.0'}: missing" in r.output
    assert f"IR {bad.resolve()}: OpenVINO cannot read the IR: Error parsing" in r.output
    assert not (tmp_path / "home").exists()
    r = CliRunner().invoke(app, ["doctor", "-w", str(ws.root), "--json"])
    data = json.loads(r.output)
    assert data["mo_env"]["state"] == "missing" and set(data["cpu"]["flags"]) >= {"avx512_bf16", "amx_tile"}


def test_doctor_reports_a_half_installed_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SSH_TOOLKIT_HOME", str(tmp_path))
    (tmp_path / "envs" / "mo-2023.3.0" / "bin").mkdir(parents=True)
    rep = diagnose(None)
    assert rep.mo_env.state == "half-installed" and "no completion marker" in rep.mo_env.reason
