"""``ssh-toolkit localize``: the per-layer kernel, the passes, the reference check, and end-to-end on the stand-in
(one weight of conv4_2 changed in the IR's .bin is flagged at conv4_2; a clean IR shows no divergence)."""

from __future__ import annotations

import json
import math
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import SMALL
from typer.testing import CliRunner

from ssh_toolkit.errors import EnvironmentProblem
from ssh_toolkit.metric.layers import NOT_IN_TEST, compare_layer, first_over, missing_layer

# ------------------------------------------------------------------------------------------ pure kernel


def test_layer_figures_match_a_direct_computation():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 3, (1, 8, 13, 11)).astype(np.float32)
    test = ref + rng.normal(0, 1e-3, ref.shape).astype(np.float32)
    d = compare_layer("conv", "Convolution", ref, test, chunk=97)  # many chunks, the last one short
    r, t = ref.astype(np.float64).ravel(), test.astype(np.float64).ravel()
    diff = np.abs(t - r)
    big = np.abs(r) >= 1e-3
    assert d.shape == (1, 8, 13, 11)
    assert d.max_abs == pytest.approx(diff.max(), rel=1e-12)
    assert d.max_rel == pytest.approx((diff[big] / np.abs(r[big])).max(), rel=1e-12)
    assert d.cosine == pytest.approx(r @ t / np.sqrt((r @ r) * (t @ t)), rel=1e-12)
    assert d.peak == pytest.approx(np.abs(r).max())
    assert d.scaled_max_abs == pytest.approx(diff.max() / np.abs(r).max(), rel=1e-12)
    whole = compare_layer("conv", "Convolution", ref, test)  # chunking changes nothing but summation order
    assert (whole.max_abs, whole.max_rel, whole.peak) == (d.max_abs, d.max_rel, d.peak)
    assert whole.cosine == pytest.approx(d.cosine, rel=1e-14)


def test_first_over_flags_by_scaled_max_abs_and_never_a_layer_the_ir_lacks():
    ref = np.full((1, 2, 2, 2), 100.0, np.float32)
    small = compare_layer("a", "Convolution", ref, ref + 0.005)  # scaled 5e-5: under 1e-4 though max_abs 5e-3
    big = compare_layer("b", "Activation", ref, ref + 0.05)  # scaled 5e-4
    gone = missing_layer("folded", "Reshape", (1, 8))
    assert small.max_abs == pytest.approx(0.005, rel=1e-3) and not small.over(1e-4)
    assert first_over([small, gone, big], 1e-4) == 2
    assert first_over([small, gone], 1e-4) is None and gone.problem == NOT_IN_TEST and math.isnan(gone.max_abs)
    # A layer that cannot be compared although the IR has it is a divergence.
    nan = compare_layer("n", "Convolution", ref, np.where(ref > 0, np.nan, ref))
    shape = compare_layer("s", "Reshape", ref, ref.reshape(1, 8))
    assert nan.problem.startswith("non-finite") and nan.over(1.0)
    assert shape.problem == "shape mismatch: reference (1, 2, 2, 2) vs test (1, 8)" and first_over([shape], 1.0) == 0
    zeros = np.zeros((3,), np.float32)
    assert compare_layer("z", "Activation", zeros, zeros).scaled_max_abs == 0.0
    assert compare_layer("z", "Activation", zeros, zeros + 1).scaled_max_abs == math.inf


def test_passes_hold_at_most_the_budget_and_keep_node_order():
    from ssh_toolkit.localize import _passes

    layers = [(n, "op") for n in "abcde"]
    nbytes = {"a": 60, "b": 50, "c": 200, "d": 10, "e": 10}
    assert _passes(layers, nbytes, 100) == [[0], [1], [2], [3, 4]]  # c alone exceeds the budget: a pass of its own
    assert _passes(layers, nbytes, 1000) == [[0, 1, 2, 3, 4]]


def test_internals_run_that_moves_the_final_outputs_is_refused():
    from ssh_toolkit.localize import check_internals

    normal = {"rpn_bbox_pred_stride8": np.ones((1, 8, 4, 4), np.float32)}
    assert check_internals(normal, {"rpn_bbox_pred_stride8": normal["rpn_bbox_pred_stride8"] + 2**-20}, 1e-5) \
        == 2**-20
    with pytest.raises(EnvironmentProblem, match=r"MXNET_SUBGRAPH_BACKEND=NONE\) gives final outputs that differ "
                                                 r"from its normal run by 5\.000e-01 \(output rpn_bbox_pred_stride8"):
        check_internals(normal, {"rpn_bbox_pred_stride8": normal["rpn_bbox_pred_stride8"] + 0.5}, 1e-5)


# ------------------------------------------------------------------------------------------ on the stand-in
def _image(sample_root: Path) -> Path:
    return sorted((sample_root / "WIDER_val" / "images").rglob("*.jpg"))[0]


def _edit_constant(xml: Path, name: str, delta: float) -> float:
    """Add ``delta`` to the first value of the f32 Constant layer ``name`` in the IR's .bin; returns the old value."""
    layer = next(lay for lay in ET.parse(xml).getroot().iter("layer") if lay.get("name") == name)
    data = layer.find("data")
    assert layer.get("type") == "Const" and data.get("element_type") == "f32"
    offset = int(data.get("offset"))
    bin_path = xml.with_suffix(".bin")
    raw = bytearray(bin_path.read_bytes())
    old = float(np.frombuffer(raw, np.float32, 1, offset)[0])
    raw[offset:offset + 4] = np.float32(old + delta).tobytes()
    bin_path.write_bytes(bytes(raw))
    return old


@pytest.fixture(scope="module")
def clean(card, standin_ws, sample_root):
    from ssh_toolkit.localize import localize

    ws, ck, _ = standin_ws
    return localize(card, ck, ws, "ir-fp32", _image(sample_root), input_size=SMALL, progress=False)


@pytest.mark.slow
def test_a_clean_ir_shows_no_divergence(clean, card):
    assert clean.first is None and clean.constants == []
    assert len(clean.layers) == 82 and all(d.compared for d in clean.layers)  # every SSH node found as <node>:0
    assert [d.node for d in clean.layers[:5]] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    worst = max(d.scaled_max_abs for d in clean.layers)
    assert 0 < worst <= card.localize.threshold["FP32"] / 4  # a real comparison, well inside the threshold
    assert clean.internals_check <= card.localize.internals_atol and clean.final_drift == 0.0
    assert clean.verdict() == "no divergence: all 82 compared layers within scaled max abs 1.0e-04 (FP32)"


@pytest.mark.slow
def test_with_the_mkldnn_subgraph_backend_the_internals_are_wrong(card, standin_ws, sample_root, monkeypatch):
    """Why the internals are bound with MXNET_SUBGRAPH_BACKEND=NONE: with MXNet's default backend a ReLU's
    internal output is its input, so relu1_1 (negative values kept) is flagged although the IR is clean."""
    import contextlib

    from ssh_toolkit import localize as loc_mod

    monkeypatch.delenv("MXNET_SUBGRAPH_BACKEND", raising=False)
    monkeypatch.setattr(loc_mod, "subgraph_backend_none", contextlib.nullcontext)
    ws, ck, _ = standin_ws
    loc = loc_mod.localize(card, ck, ws, "ir-fp32", _image(sample_root), input_size=SMALL, progress=False)
    assert loc.layers[loc.first].node == "relu1_1" and loc.weight is None
    assert loc.verdict().endswith("no weight constant feeds it (its inputs come from earlier layers)")


@pytest.mark.slow
def test_one_weight_of_conv4_2_changed_in_the_ir_is_flagged_at_conv4_2(card, standin_ws, sample_root, tmp_path, clean):
    from ssh_toolkit.localize import localize_ir
    from ssh_toolkit.runners.openvino import PARITY_CONFIG

    ws, ck, irs = standin_ws
    folder = tmp_path / "ir"
    shutil.copytree(irs["FP32"].xml.parent, folder)
    xml = folder / irs["FP32"].xml.name
    _edit_constant(xml, "conv4_2_weight", 0.5)
    loc = localize_ir(card, ck, xml, _image(sample_root), model="ir-fp32", precision="FP32",
                      config=dict(PARITY_CONFIG), input_size=SMALL, progress=False)
    assert loc.layers[loc.first].node == "conv4_2"
    # Every layer before it is as in the clean IR; conv4_2 itself is far over the threshold.
    assert all(not d.over(loc.threshold) for d in loc.layers[:loc.first])
    assert loc.layers[loc.first].scaled_max_abs > 100 * loc.threshold
    assert [d.max_abs for d in loc.layers[:loc.first]] == [d.max_abs for d in clean.layers[:loc.first]]
    assert loc.weight.name == "conv4_2_weight" and loc.weight.shape == (512, 512, 3, 3)
    assert loc.weight.consumer.startswith("Convolution ") and loc.weight.port == 1
    assert loc.verdict().startswith("first divergence at layer 20 of 82: conv4_2 (Convolution), scaled max abs ")


@pytest.mark.slow
def test_the_weight_constant_is_found_through_edges_when_model_optimizer_renamed_it(card, standin_ws):
    """MO folds the channel flip into conv1_1: its weight Constant is no longer named after conv1_1. Its values
    are MXNet's conv1_1 weight with the input channels reversed."""
    from openvino import Core

    from ssh_toolkit.localize import feeding_constants, find_tensor, ir_tensors, mxnet_layers
    from ssh_toolkit.mxnet_format import read_params

    ws, ck, irs = standin_ws
    model = Core().read_model(irs["FP32"].xml)
    index = ir_tensors(model)
    others = [find_tensor(index, n) for n, _ in mxnet_layers(ck)] + [p.output(0) for p in model.get_parameters()]
    found = feeding_constants(model, find_tensor(index, "conv1_1"), others)
    weight = found[0]
    assert "conv1_1" not in weight.name and weight.consumer.startswith("Convolution ") and weight.port == 1
    const = next(op for op in model.get_ordered_ops() if op.get_friendly_name() == weight.name)
    expected = read_params(ck.params_path)["arg:conv1_1_weight"][:, ::-1]
    np.testing.assert_array_equal(const.get_data(), expected)
    assert feeding_constants(model, find_tensor(index, "relu1_1"), others) == []  # a ReLU has no weight


@pytest.mark.slow
def test_extra_outputs_that_change_the_final_outputs_are_a_warning(card, standin_ws, sample_root):
    """At bf16 OpenVINO fuses differently once intermediate tensors are outputs (measured: 3.1e-2 at 128)."""
    from ssh_toolkit.localize import localize
    from ssh_toolkit.runners.openvino import default_exec_precision

    if default_exec_precision() != "bf16":
        pytest.skip("this CPU does not run bf16")
    ws, ck, _ = standin_ws
    loc = localize(card, ck, ws, "ir-fp32@bf16", _image(sample_root), input_size=SMALL, progress=False)
    assert loc.precision == "FP32@bf16" and loc.threshold == card.localize.threshold["FP32@bf16"]
    assert loc.final_drift > 0
    assert loc.warnings == [f"the IR's final outputs change by up to {loc.final_drift:.3e} when intermediate tensors "
                            f"are added as outputs (OpenVINO fuses differently): the per-layer figures describe "
                            f"that variant"]


@pytest.mark.slow
def test_cli_writes_the_run_folder_and_refuses_when_the_internals_disagree(card, standin_ws, sample_root, tmp_path,
                                                                            monkeypatch):
    from ssh_toolkit import localize as loc_mod
    from ssh_toolkit.cli import app

    ws, ck, _ = standin_ws
    args = ["localize", "--model", "ir-fp16", "--weights", "standin", "--input-size", str(SMALL),
            "--data-root", str(sample_root), "--index", "0", "-w", str(ws.root)]
    out = tmp_path / "loc"
    r = CliRunner().invoke(app, [*args, "--report-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert "no divergence: all 82 compared layers within scaled max abs 1.0e-02 (FP16)" in r.output
    assert sorted(p.name for p in out.iterdir()) == [".ssh-toolkit.json", "localize.csv", "localize.html",
                                                     "localize.json"]
    record = json.loads((out / "localize.json").read_text())
    assert record["model"] == "ir-fp16" and record["first"] is None and len(record["layers"]) == 82
    assert record["image"] == str(_image(sample_root).resolve())
    assert "data:image/png;base64," in (out / "localize.html").read_text()

    # Simulated: MXNet's internals run gives other final outputs than its normal run -> exit 3, nothing written.
    forward = loc_mod.MXNetInternals.forward

    def shifted(self, names, tensor):
        outs = forward(self, names, tensor)
        return [o + 1.0 if n == self.heads[0] else o for n, o in zip(names, outs)]

    monkeypatch.setattr(loc_mod.MXNetInternals, "forward", shifted)
    refused = tmp_path / "refused"
    r = CliRunner().invoke(app, [*args, "--report-dir", str(refused)])
    assert r.exit_code == 3
    assert "gives final outputs that differ from its normal run by 1.000e+00" in r.output
    assert not refused.exists()

    # Ctrl-C in the middle of the comparison: exit 130, and no run folder (nothing partial).
    monkeypatch.setattr(loc_mod.MXNetInternals, "forward", forward)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(loc_mod, "compare_layer", interrupted)
    stopped = tmp_path / "stopped"
    r = CliRunner().invoke(app, [*args, "--report-dir", str(stopped)])
    assert r.exit_code == 130 and not stopped.exists()


# ------------------------------------------------------------------------------------------ graph walk, small
def _tiny_ir(names: dict[str, set[str]]):
    """Parameter -> Convolution (f16 weight through Convert) -> Add (bias) -> Relu, tensors named by ``names``."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter([1, 2, 4, 4], np.float32, name="data")
    w16 = ops.constant(np.arange(4, dtype=np.float16).reshape(2, 2, 1, 1), name="renamed_by_converter")
    conv = ops.convolution(x, ops.convert(w16, np.float32), [1, 1], [0, 0], [0, 0], [1, 1])
    add = ops.add(conv, ops.constant(np.ones((1, 2, 1, 1), np.float32), name="bias"))
    relu = ops.relu(add)
    add.output(0).set_names(names["conv"])
    relu.output(0).set_names(names["relu"])
    return ov.Model([relu], [x], "tiny")


@pytest.mark.parametrize("style", ["mo", "native"])
def test_tensors_are_found_as_node_colon_0_or_node_and_the_weight_through_convert(style):
    from ssh_toolkit.localize import feeding_constants, find_tensor, ir_tensors

    names = {"conv": {"conv:0"}, "relu": {"relu:0"}} if style == "mo" else {"conv": {"conv"}, "relu": {"relu"}}
    model = _tiny_ir(names)
    index = ir_tensors(model)
    conv, relu = find_tensor(index, "conv"), find_tensor(index, "relu")
    assert conv.get_node().get_type_name() == "Add" and relu.get_node().get_type_name() == "Relu"
    assert find_tensor(index, "pool") is None
    others = [conv, relu, model.get_parameters()[0].output(0)]
    weight, bias = feeding_constants(model, conv, others)
    assert (weight.name, weight.element_type, weight.shape, weight.port, weight.via) == (
        "renamed_by_converter", "f16", (2, 2, 1, 1), 1, ("Convert",))
    assert weight.consumer.startswith("Convolution ") and weight.is_float
    assert (bias.name, bias.consumer.split(" ")[0], bias.port) == ("bias", "Add", 1)
    assert feeding_constants(model, relu, others) == []  # stops at conv's tensor: a ReLU has no weight


@pytest.mark.slow
def test_cli_usage_errors_are_one_line_exit_2(tmp_path, sample_root):
    from ssh_toolkit.cli import app

    ws = ["-w", str(tmp_path / "ws"), "--report-dir", str(tmp_path / "out")]
    image = _image(sample_root)
    for args, message in [
        ([], "give exactly one of --image PATH or --data-root WIDER_ROOT (with --index N)"),
        (["--image", str(image), "--data-root", str(sample_root)], "give exactly one of --image PATH"),
        (["--image", str(image), "--index", "3"], "--index picks an image of --data-root; with --image it has no "
                                                  "meaning"),
        (["--image", str(tmp_path / "none.jpg")], f"{tmp_path / 'none.jpg'}: image not found"),
        (["--data-root", str(sample_root), "--index", "99"], f"--index 99: {sample_root} has 14 images (0..13)"),
    ]:
        r = CliRunner().invoke(app, ["localize", "--model", "ir-fp32", *args, *ws])
        assert r.exit_code == 2, r.output
        assert r.output.startswith(f"ssh-toolkit: error: {message}") and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ toy, native route
@pytest.fixture(scope="module")
def toy_native(tmp_path_factory, card):
    """A workspace with the toy checkpoint and its native FP32 IR at SMALL (no Model Optimizer: fast)."""
    from ssh_toolkit.convert import convert
    from ssh_toolkit.standins.toy import synthesize_toy
    from ssh_toolkit.workspace import Workspace

    ws = Workspace(tmp_path_factory.mktemp("loc-toy") / "ws")
    ck = synthesize_toy(card, ws.checkpoint_dir("toy"))
    convert(card, ck, ws, "FP32", SMALL, route="native")
    return ws


@pytest.mark.slow
def test_cli_never_replaces_an_evaluate_run_folder_and_reads_an_image_whose_name_is_not_utf8(toy_native,
                                                                                            sample_root, tmp_path):
    """--report-dir naming a run folder of evaluate (the gate's record) is refused, exit 2, the run kept whole;
    an image whose name is not UTF-8 is read (OpenCV's imread crashed on it) and named with an escape."""
    import os

    from ssh_toolkit.cli import app
    from ssh_toolkit.fileio import atomic_dir

    run = tmp_path / "run"
    with atomic_dir(run, kind="run") as tmp:
        (tmp / "summary.json").write_text("{}")
    args = ["localize", "--model", "ir-native-fp32", "--weights", "toy", "--input-size", str(SMALL),
            "-w", str(toy_native.root)]
    r = CliRunner().invoke(app, [*args, "--image", str(_image(sample_root)), "--report-dir", str(run)])
    assert r.exit_code == 2, r.output
    assert f"{run}: is a run folder (evaluate) written by ssh-toolkit, not a localize report folder" in r.output
    assert (run / "summary.json").read_text() == "{}"

    odd = os.fsdecode(os.fsencode(tmp_path) + b"/face \xff.jpg")
    shutil.copy(_image(sample_root), odd)
    out = tmp_path / "loc"
    r = CliRunner().invoke(app, [*args, "--image", odd, "--report-dir", str(out)])
    assert r.exit_code == 0, r.output
    assert "no divergence" in r.output
    assert json.loads((out / "localize.json").read_text())["image"] == f"{tmp_path}/face \\xff.jpg"
    assert json.loads((out / ".ssh-toolkit.json").read_text())["kind"] == "localize"
    assert "face \\xff.jpg" in (out / "localize.html").read_text()


def test_help_names_the_models_of_both_routes_and_int8():
    from ssh_toolkit.cli import app

    r = CliRunner().invoke(app, ["localize", "--help"], terminal_width=200)
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "ir-fp32, ir-fp16, ir-native-fp32, ir-native-fp16, ir-int8, each also @bf16" in text


@pytest.mark.slow
def test_a_workspace_whose_path_is_not_utf8_is_one_line_exit_2(toy_native, sample_root, tmp_path):
    """MXNet encodes the checkpoint path as UTF-8 and raised UnicodeEncodeError (a traceback) for a folder whose
    name is not UTF-8: localize (and evaluate, through the same runner) say so in one line, exit 2."""
    import os

    from ssh_toolkit.cli import app

    odd = os.fsdecode(os.fsencode(tmp_path) + b"/ws \xff")
    shutil.copytree(toy_native.root, odd)
    r = CliRunner().invoke(app, ["localize", "--model", "ir-native-fp32", "--weights", "toy", "--input-size",
                                 str(SMALL), "-w", odd, "--image", str(_image(sample_root)), "--report-dir",
                                 str(tmp_path / "loc")])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines()[-1] == (
        f"ssh-toolkit: error: {tmp_path}/ws \\xff/checkpoints/toy/sshb-0000.params: MXNet cannot open a path that "
        "is not UTF-8; move or rename the folder")
    assert not (tmp_path / "loc").exists()


@pytest.mark.parametrize("model", ["ir-fp32@f16", "ir-fp32@"])
def test_a_model_suffix_localize_cannot_run_names_the_model_not_an_option_it_lacks(card, model):
    from ssh_toolkit.errors import UsageError
    from ssh_toolkit.localize import localize

    with pytest.raises(UsageError) as e:
        localize(card, None, None, model, "x.jpg")
    assert str(e.value) == (f"--model {model}: localize runs an IR pinned at f32 or bf16 (ir-fp32 or "
                            "ir-fp32@bf16)")
