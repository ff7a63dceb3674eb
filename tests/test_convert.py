import json
import shutil

import numpy as np
import pytest
from conftest import SMALL

from ssh_toolkit.convert import ConvertedModel, convert, mo_arguments
from ssh_toolkit.errors import ConversionError, InputDataError, UsageError
from ssh_toolkit.runners.mxnet import MXNetRunner
from ssh_toolkit.runners.openvino import OpenVINORunner
from ssh_toolkit.workspace import Checkpoint, Workspace

pytestmark = pytest.mark.slow  # Model Optimizer runs (the session's standin workspace): not in the fast lane


def test_mo_arguments_fold_the_preprocessing_and_set_precision(card, standin_ws):
    _, ck, _ = standin_ws
    args = mo_arguments(card, ck, "FP32", 256)
    assert f"--input_model={ck.params_path}" in args
    assert "--input_shape=[1,3,256,256]" in args
    assert "--reverse_input_channels" in args and "--mean_values=data[123.68,116.779,103.939]" in args
    assert "--compress_to_fp16=False" in args
    assert "--compress_to_fp16=True" in mo_arguments(card, ck, "FP16", 256)


def test_conversion_record_and_ir_outputs(card, standin_ws):
    ws, ck, irs = standin_ws
    for precision, ir in irs.items():
        rec = json.loads((ir.directory / "conversion.json").read_text())
        assert rec["precision"] == precision and rec["input_size"] == SMALL
        assert rec["weights"] == "standin" and rec["checkpoint_kind"] == "standin"
        assert rec["mo_version"].startswith("2023.3")
        assert rec["inputs"] == {"data": [1, 3, SMALL, SMALL]}
        # the IR names outputs with a ":0" suffix; every card output is there with the right shape
        s = SMALL // 8
        assert rec["outputs"]["rpn_bbox_pred_stride8:0"] == [1, 8, s, s]
        assert {n.removesuffix(":0") for n in rec["outputs"]} == set(card.output_names)
        assert ConvertedModel.load(ir.directory) == ir
    # FP16 weights are half the size
    assert irs["FP16"].bin.stat().st_size < 0.6 * irs["FP32"].bin.stat().st_size


def test_up_to_date_ir_is_reused_and_a_changed_checkpoint_is_not(card, standin_ws, tmp_path):
    ws, ck, irs = standin_ws
    again = convert(card, ck, ws, "FP32", SMALL)
    assert again.reused and again.sha256 == irs["FP32"].sha256
    # tampering with the IR invalidates it
    ws2 = Workspace(tmp_path)
    shutil.copytree(ck.directory, ws2.checkpoint_dir("standin"))
    shutil.copytree(irs["FP32"].directory, ws2.ir_dir("standin", SMALL, "FP32"))
    ck2 = Checkpoint.load(ws2.checkpoint_dir("standin"))
    assert convert(card, ck2, ws2, "FP32", SMALL).reused  # same content, other folder: still up to date
    xml = ws2.ir_dir("standin", SMALL, "FP32") / "sshb.xml"
    xml.write_text(xml.read_text() + " ")
    assert not convert(card, ck2, ws2, "FP32", SMALL).reused


def test_fp32_ir_matches_mxnet_at_small_size(card, standin_ws):
    """The folded preprocessing is right: BGR 0..255 into the IR equals RGB-minus-mean into MXNet."""
    from ssh_toolkit.model.preprocess import to_tensor

    ws, ck, irs = standin_ws
    img = np.random.default_rng(0).integers(0, 256, (SMALL, SMALL, 3)).astype(np.float32)
    with MXNetRunner(ck, "data", SMALL, card.output_names) as mx, \
            OpenVINORunner(irs["FP32"].xml, card.output_names) as ov:
        a = mx.infer(to_tensor(img, card.preprocess["mxnet"]))
        b = ov.infer(to_tensor(img, card.preprocess["ir"]))
        wrong = ov.infer(to_tensor(img, card.preprocess["ir"], swap_channels=True))
    for name in card.output_names:
        assert np.abs(a[name] - b[name]).max() < 1e-3, name
    assert max(np.abs(a[n] - wrong[n]).max() for n in card.output_names) > 1e-2


def test_wrong_checkpoint_naming_is_caught_before_model_optimizer(card, standin_ws, tmp_path):
    _, ck, _ = standin_ws
    ws = Workspace(tmp_path)
    d = ws.checkpoint_dir("standin")
    shutil.copytree(ck.directory, d)
    (d / "sshb-symbol.json").rename(d / "sshb.json")
    bad = Checkpoint(d, "sshb", 0, "standin", ck.params_sha256)
    with pytest.raises(InputDataError, match="sshb-symbol.json: missing; Model Optimizer looks for the symbol"):
        convert(card, bad, ws, "FP32", SMALL)
    assert not ws.ir_dir("standin", SMALL, "FP32").exists()


def test_model_optimizer_failure_surfaces_its_error_and_leaves_nothing(card, standin_ws, tmp_path):
    _, ck, _ = standin_ws
    ws = Workspace(tmp_path)
    d = ws.checkpoint_dir("standin")
    shutil.copytree(ck.directory, d)
    (d / "sshb-0000.params").write_bytes(b"this is not an mxnet params file")
    bad = Checkpoint(d, "sshb", 0, "standin", "0" * 64)
    with pytest.raises(ConversionError) as e:
        convert(card, bad, ws, "FP32", SMALL)
    msg = str(e.value)
    assert msg.startswith("Model Optimizer failed on ") and "sshb-0000.params (FP32, exit" in msg
    assert "Invalid NDArray file format" in msg  # MXNet's reason, not Model Optimizer's FAQ boilerplate
    assert "\n" not in msg and e.value.detail  # the log tail rides along separately
    log = ws.ir_dir("standin", SMALL, "FP32").parent / "FP32-mo-failed.log"
    assert f"(full log: {log})" in msg and "MXNetError" in log.read_text()
    assert e.value.exit_code == 3
    ir_parent = ws.ir_dir("standin", SMALL, "FP32").parent
    assert not ws.ir_dir("standin", SMALL, "FP32").exists()
    assert not [p for p in ir_parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("size", [100, 0, -32])
def test_input_size_must_be_a_positive_multiple_of_the_largest_stride(card, standin_ws, size):
    ws, ck, _ = standin_ws
    with pytest.raises(UsageError, match=f"--input-size {size}: must be a positive multiple of 32, the largest"):
        convert(card, ck, ws, "FP32", size)


def test_conversion_record_names_the_legacy_env_and_mo_runs_from_it(card, standin_ws, mo_env):
    _, _, irs = standin_ws
    rec = json.loads((irs["FP32"].directory / "conversion.json").read_text())
    assert rec["mo_version"] == mo_env.mo_version and rec["mo_version"].startswith("2023.3.0")
    env = rec["mo_env"]
    assert env["path"] == str(mo_env.path) and env["python"] == mo_env.python_version
    assert (env["openvino-dev"], env["numpy"], env["mxnet"]) == ("2023.3.0", "1.23.5", "1.9.1")
    assert rec["versions"]["openvino"].startswith("2026.4")  # the runtime that read the IR back
    # the IR itself says which Model Optimizer wrote it: the legacy one, not the 2026 runtime
    assert f'<MO_version value="{mo_env.mo_version}"' in irs["FP32"].xml.read_text()


@pytest.mark.slow  # the standin workspace fixture runs Model Optimizer
def test_an_ir_is_not_up_to_date_once_the_checkpoint_files_changed(card, standin_ws, tmp_path):
    """The fingerprint hashes the files as they are now, not the sha256 checkpoint.json recorded (finding 6)."""
    import struct

    from ssh_toolkit.mxnet_format import read_params_index

    ws, ck, irs = standin_ws
    ws2 = Workspace(tmp_path)
    shutil.copytree(ck.directory, ws2.checkpoint_dir("standin"))
    shutil.copytree(irs["FP32"].directory, ws2.ir_dir("standin", SMALL, "FP32"))
    ck2 = Checkpoint.load(ws2.checkpoint_dir("standin"))
    assert convert(card, ck2, ws2, "FP32", SMALL).reused
    info = read_params_index(ck2.params_path)["arg:rpn_bbox_pred_stride8_weight"]
    blob = bytearray(ck2.params_path.read_bytes())
    struct.pack_into("<f", blob, info.offset, struct.unpack_from("<f", blob, info.offset)[0] + 0.5)
    ck2.params_path.write_bytes(bytes(blob))  # checkpoint.json still names the old sha256
    again = convert(card, ck2, ws2, "FP32", SMALL)
    assert not again.reused and again.fingerprint != irs["FP32"].fingerprint
    assert again.sha256["bin"] != irs["FP32"].sha256["bin"]  # the edited weight reached the IR
