"""The shared inference phase: execution variants and their names."""

from __future__ import annotations

import pytest
from conftest import SMALL

from ssh_toolkit.errors import BackendError, UsageError
from ssh_toolkit.inference import exec_variants, model_set
from ssh_toolkit.runners.openvino import OpenVINORunner, default_exec_precision


def _cpu_has_bf16() -> bool:
    with open("/proc/cpuinfo") as f:
        flags = f.read()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def test_the_runtime_default_follows_the_cpu_flags():
    assert default_exec_precision() == ("bf16" if _cpu_has_bf16() else "f32")


def test_default_folds_into_a_pinned_variant_of_the_same_precision():
    variants, notes = exec_variants(["f32", "default", "bf16"])
    assert [v.precision for v in variants] == (["f32", "bf16"] if _cpu_has_bf16() else ["f32"])
    assert len(notes) == 1 and "evaluated once" in notes[0]
    with pytest.raises(UsageError, match="--exec-precision 'int8': expected one of f32, bf16, default"):
        exec_variants(["int8"])


@pytest.mark.slow  # standin_ws runs Model Optimizer
def test_model_names_say_the_precision_that_runs(card, standin_ws):
    ws, ck, irs = standin_ws
    models = model_set(card, ck, list(irs.values()), SMALL, exec_precisions=["f32", "default"])
    deploy = default_exec_precision()
    expected = ["mxnet", "ir-fp32", "ir-fp16"] if deploy == "f32" else \
        ["mxnet", f"ir-fp32@{deploy}", "ir-fp32", f"ir-fp16@{deploy}", "ir-fp16"]
    assert sorted(m.name for m in models) == sorted(expected)
    by = {m.name: m for m in models}
    assert by["ir-fp32"].precision == "FP32"
    if deploy != "f32":
        assert by[f"ir-fp16@{deploy}"].precision == f"FP16@{deploy}"
        assert len({m.key for m in models}) == len(models)  # each variant has its own cache


@pytest.mark.skipif(not _cpu_has_bf16(), reason="needs a CPU that runs bf16")
@pytest.mark.slow  # standin_ws runs Model Optimizer
def test_a_runner_refuses_to_run_in_another_precision_than_its_name_says(card, standin_ws):
    _, _, irs = standin_ws
    r = OpenVINORunner(irs["FP32"].xml, card.output_names, name="ir-fp32", config={"INFERENCE_PRECISION_HINT": "bf16"},
                       expect_exec_precision="f32")
    with pytest.raises(BackendError, match="compiled to run in bf16, not the f32 its model name 'ir-fp32' says"):
        r.activate()


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory, card):
    from ssh_toolkit.standins.toy import synthesize_toy

    return synthesize_toy(card, tmp_path_factory.mktemp("toy") / "checkpoints" / "toy", seed=0)


def test_damaged_cache_entries_are_reinferred_in_the_same_run_with_a_warning(card, toy_checkpoint, sample_root,
                                                                             tmp_path, capsys):
    """Finding 15: an entry lacking an output or of a wrong shape failed in decode ("output ... missing", exit 3)
    without naming the file, on every rerun; a zero-byte or garbage entry was deleted but stopped the run."""
    import numpy as np

    from ssh_toolkit.data.wider import open_wider
    from ssh_toolkit.inference import run_models, scan_images
    from ssh_toolkit.model.outputs import RawOutputs
    from ssh_toolkit.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ds = open_wider(sample_root).select(limit=6)
    images = scan_images([ds.image_path(im) for im in ds.images], progress=False)
    models = model_set(card, toy_checkpoint, [], SMALL, ["mxnet"])
    caches, inferred = run_models(card, models, images, ws, SMALL, progress=False)
    assert inferred == {"mxnet": 6}
    cache = caches["mxnet"]
    good = [cache.get(k, "mxnet") for k in images.keys]
    name = "rpn_bbox_pred_stride8"
    damage = {
        0: ("zero bytes", "corrupt cache entry"),
        1: ("garbage", "corrupt cache entry"),
        2: ("missing", f"lacks output {name}"),
        3: ("shape", f"output {name} has shape (1, 8, 16, 15), expected (1, *, 16, 16)"),
        4: ("nan", f"output {name} holds non-finite values"),
        5: ("empty", f"output {name} has shape (1, 0, 16, 16), expected (1, *, 16, 16)"),
    }
    for i, (how, _) in damage.items():
        path = cache.path(images.keys[i])
        raw, hw = good[i]
        arrays = dict(raw.arrays)
        if how == "zero bytes":
            path.write_bytes(b"")
            continue
        if how == "garbage":
            path.write_bytes(b"not a zip file at all" * 10)
            continue
        if how == "missing":
            del arrays[name]
        elif how == "shape":
            arrays[name] = arrays[name][..., :-1]
        elif how == "nan":
            arrays[name] = arrays[name].copy()
            arrays[name][0, 0, 0, 0] = np.nan
        elif how == "empty":
            arrays[name] = arrays[name][:, :0]
        cache.put(images.keys[i], RawOutputs(arrays, "mxnet", raw.seconds), hw)
    capsys.readouterr()

    caches, inferred = run_models(card, models, images, ws, SMALL, progress=False)
    assert inferred == {"mxnet": 6}  # every damaged entry inferred again, in the same run
    err = capsys.readouterr().err
    for i, (_, reason) in damage.items():
        assert f"warning: {cache.path(images.keys[i])}: {reason}" in err, (reason, err)
        assert "inferring that image again" in err
    for k, (raw, hw) in zip(images.keys, good):
        again, hw2 = caches["mxnet"].get(k, "mxnet")
        assert hw2 == hw and again.arrays.keys() == raw.arrays.keys()
        for n in raw.arrays:
            np.testing.assert_array_equal(again.arrays[n], raw.arrays[n])
    assert run_models(card, models, images, ws, SMALL, progress=False)[1] == {"mxnet": 0}


def _fake_ir(directory, kind="toy", size=SMALL, precision="FP32"):
    """An IR folder whose conversion.json records the sha256 of its files (content need not be a real IR here)."""
    from ssh_toolkit.convert import RECORD, ConvertedModel
    from ssh_toolkit.fileio import sha256_file, write_json

    directory.mkdir(parents=True)
    (directory / "sshb.xml").write_text("<net/>")
    (directory / "sshb.bin").write_bytes(b"\0" * 64)
    ir = ConvertedModel(directory=directory, prefix="sshb", precision=precision, input_size=size,
                        checkpoint_kind=kind, weights="standin", command=("mo",), mo_version="2023.3", seconds=1.0,
                        inputs={}, outputs={}, sha256={"xml": sha256_file(directory / "sshb.xml"),
                                                     "bin": sha256_file(directory / "sshb.bin")}, fingerprint="f")
    write_json(directory / RECORD, ir.to_json())
    return ConvertedModel.load(directory)


@pytest.mark.parametrize("damaged", ["xml", "bin"])
def test_an_ir_changed_since_conversion_is_refused_before_it_runs(card, toy_checkpoint, tmp_path, damaged):
    """Finding 16: a truncated .xml/.bin ran and failed with exit 3 and the reason cut; conversion.json records
    the sha256 of both files."""
    from ssh_toolkit.errors import InputDataError

    ir = _fake_ir(tmp_path / "ir" / "toy-128" / "FP32")
    assert [m.name for m in model_set(card, toy_checkpoint, [ir], SMALL, exec_precisions=["f32"])] == ["mxnet",
                                                                                                     "ir-fp32"]
    path = getattr(ir, damaged)
    path.write_bytes(path.read_bytes()[:3])
    with pytest.raises(InputDataError) as info:
        model_set(card, toy_checkpoint, [ir], SMALL, exec_precisions=["f32"])
    assert str(info.value) == (f"{path}: changed since conversion (sha256 differs from conversion.json); run "
                               f"'ssh-toolkit convert --force --weights toy --input-size 128 --precision FP32'")
    assert info.value.exit_code == 2
    path.unlink()
    with pytest.raises(InputDataError, match=f"{path}: missing; run 'ssh-toolkit convert --force --weights toy "):
        model_set(card, toy_checkpoint, [ir], SMALL, exec_precisions=["f32"])


def test_a_model_asked_for_under_another_exec_precision_is_named_as_it_runs_there(card, toy_checkpoint, tmp_path):
    """Finding 18: '--exec-precision bf16 --model ir-fp32' said 'not converted' although it is: under that option
    the IR runs as ir-fp32@bf16. A convert hint names the checkpoint (--weights), as a workspace may hold several."""
    ir = _fake_ir(tmp_path / "ir" / "toy-128" / "FP32")
    with pytest.raises(UsageError) as info:
        model_set(card, toy_checkpoint, [ir], SMALL, ["ir-fp32"], exec_precisions=["bf16"])
    assert str(info.value) == ("--model ir-fp32: not run under --exec-precision bf16, where this IR is "
                               "ir-fp32@bf16; add --exec-precision f32 to evaluate ir-fp32")
    assert [m.name for m in model_set(card, toy_checkpoint, [ir], SMALL, ["ir-fp32@bf16"],
                                      exec_precisions=["bf16"])] == ["ir-fp32@bf16"]
    with pytest.raises(UsageError) as info:
        model_set(card, toy_checkpoint, [ir], SMALL, ["ir-fp32@bf16"], exec_precisions=["f32"])
    assert str(info.value) == ("--model ir-fp32@bf16: not run under --exec-precision f32, where this IR is "
                               "ir-fp32; add --exec-precision bf16 to evaluate ir-fp32@bf16")
    with pytest.raises(UsageError) as info:
        model_set(card, toy_checkpoint, [ir], SMALL, ["ir-fp16@bf16"], exec_precisions=["bf16"])
    assert str(info.value) == ("--model ir-fp16@bf16: not converted at input size 128; run 'ssh-toolkit convert "
                               "--weights toy --input-size 128 --precision FP16' first")
