import re
from pathlib import Path

import pytest
import yaml

from ssh_toolkit.card import DEFAULT_CARD, load_card
from ssh_toolkit.errors import CardError


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(DEFAULT_CARD.read_text())
    mutate(data)
    p = tmp_path / "card.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def test_default_card_matches_the_spec(card):
    assert card.name == "ssh-mxnet"
    assert card.reference_map == 84.80
    assert card.checkpoint.params_file == "sshb-0000.params"
    assert card.checkpoint.symbol_file == "sshb-symbol.json"
    assert card.checkpoint.size == 73_316_283
    assert card.strides == (32, 16, 8) == card.protocol.strides
    assert card.output_names[:2] == ("rpn_cls_prob_reshape_stride32", "rpn_bbox_pred_stride32")
    assert card.anchors.per_position == 2
    assert card.protocol.keep_top_k == 1000 and card.protocol.nms_threshold == 0.3
    assert card.protocol.height_range == (64.0, 1024.0)
    assert card.preprocess["mxnet"].channel_order == "RGB"
    assert card.preprocess["mxnet"].mean == (123.68, 116.779, 103.939)
    assert card.preprocess["ir"].channel_order == "BGR"
    assert "--reverse_input_channels" in card.mo_args


def test_tolerance_lookup_prefers_name_then_kind_then_default(card):
    assert card.tolerance("FP16", "rpn_bbox_pred_stride8").atol == 0.05  # by kind
    assert card.tolerance("FP16", "rpn_cls_prob_reshape_stride8").atol == 0.01
    assert card.tolerance("FP32", "rpn_bbox_pred_stride8").atol == 1e-3  # default


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["checkpoint"].pop("sha256"), "key 'checkpoint.sha256': missing"),
    (lambda d: d["checkpoint"].update(sha256="abc"), "key 'checkpoint.sha256': expected 64 lowercase hex"),
    (lambda d: d["checkpoint"].update(size="big"), "key 'checkpoint.size': expected an integer"),
    (lambda d: d["input"].update(layout="NHWC"), "key 'input.layout': only NCHW"),
    (lambda d: d["preprocess"]["mxnet"].update(channel_order="RBG"), "key 'preprocess.mxnet.channel_order'"),
    (lambda d: d["preprocess"]["ir"].update(mean=[1, 2]), "key 'preprocess.ir.mean': expected 3 items"),
    (lambda d: d["convert"].update(precisions=["INT8"]), "unknown precision 'INT8'"),
    (lambda d: d["convert"]["model_optimizer_args"].append("--input_shape=[1,3,4,4]"), "set by the toolkit"),
    (lambda d: d["outputs"][0].update(kind="logits"), "key 'outputs[0].kind'"),
    (lambda d: d["outputs"].pop(1), "stride 32 has no output of kind 'deltas'"),
    (lambda d: d["protocol"].update(nms_threshold=None), "key 'protocol.nms_threshold': expected a number"),
    (lambda d: d["protocol"].update(strides=[32, 16]), "key 'protocol.strides': must list each output stride"),
    (lambda d: d["protocol"].update(include_boundaries="yes"), "expected true or false"),
    (lambda d: d["tolerances"].pop("FP16"), "key 'tolerances.FP16': missing"),
    (lambda d: d["tolerances"]["FP32"].update(bogus={"atol": 1, "rtol": 0, "min_cosine": 1}),
     "key 'tolerances.FP32.bogus'"),
    (lambda d: d["gates"]["ir_vs_mxnet_drop"].pop("FP16"), "key 'gates.ir_vs_mxnet_drop.FP16': missing"),
])
def test_invalid_card_names_file_and_key(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(CardError) as e:
        load_card(path)
    assert message in str(e.value)
    assert str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_stride_order_comes_from_the_protocol_not_the_output_listing(tmp_path):
    """Listing outputs in the IR's order (16, 32, 8) must not change the decode order that breaks ties."""
    def reorder(d):
        d["outputs"] = d["outputs"][2:4] + d["outputs"][0:2] + d["outputs"][4:]

    card = load_card(_write(tmp_path, reorder))
    assert card.output_names[0] == "rpn_cls_prob_reshape_stride16"
    assert card.strides == (32, 16, 8)


def test_missing_and_unparsable_card(tmp_path):
    with pytest.raises(CardError, match="pipeline file not found"):
        load_card(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(CardError, match=r"not valid YAML at line \d"):
        load_card(bad)


# ------------------------------------------------------------------------------------ values (issue 7, defect 6)

NAN, INF = float("nan"), float("inf")


def _set(*path_and_value):
    *path, key, value = path_and_value

    def mutate(d):
        for p in path:
            d = d[p]
        d[key] = value
    return mutate


@pytest.mark.parametrize("mutate, message", [
    # NaN and infinities
    (_set("protocol", "nms_threshold", NAN), "key 'protocol.nms_threshold': expected a finite number, got nan"),
    (_set("tolerances", "FP32", "default", "atol", INF), "key 'tolerances.FP32.default.atol': expected a finite "
                                                         "number, got inf"),
    (_set("gates", "map_vs_baseline", "atol", -INF), "key 'gates.map_vs_baseline.atol': expected a finite number"),
    (_set("preprocess", "mxnet", "mean", [NAN, 1.0, 2.0]), "key 'preprocess.mxnet.mean': expected finite numbers"),
    # thresholds within (0, 1)
    (_set("protocol", "nms_threshold", 0.0), "key 'protocol.nms_threshold': must be in (0, 1), got 0.0"),
    (_set("protocol", "nms_threshold", 1), "key 'protocol.nms_threshold': must be in (0, 1), got 1"),
    (_set("protocol", "overlap_threshold", 1.5), "key 'protocol.overlap_threshold': must be in (0, 1), got 1.5"),
    (_set("box_match", "iou", 0), "key 'box_match.iou': must be in (0, 1), got 0"),
    (_set("box_match", "min_score", 1.0), "key 'box_match.min_score': must be in (0, 1), got 1.0"),
    (_set("tolerances", "FP16", "scores", "min_cosine", 0.0), "key 'tolerances.FP16.scores.min_cosine': must be "
                                                              "in (0, 1], got 0.0"),
    (_set("tolerances", "FP16", "deltas", "min_cosine", 1.01), "key 'tolerances.FP16.deltas.min_cosine': must be "
                                                               "in (0, 1], got 1.01"),
    (_set("gates", "min_box_match_rate", "FP16", 0), "key 'gates.min_box_match_rate.FP16': must be in (0, 1], got 0"),
    # sizes positive
    (_set("input", "size", 0), "key 'input.size': must be in [32, inf), got 0"),
    (_set("checkpoint", "size", 0), "key 'checkpoint.size': must be in [1, inf), got 0"),
    (_set("protocol", "keep_top_k", -5), "key 'protocol.keep_top_k': must be in [1, inf), got -5"),
    (_set("anchors", "base_size", 0), "key 'anchors.base_size': must be in [1, inf), got 0"),
    (_set("anchors", "ratios", [0.0]), "key 'anchors.ratios': expected numbers > 0, got 0.0"),
    (_set("anchors", "scales", 32, [32, -16]), "key 'anchors.scales.32': expected numbers > 0, got -16"),
    (lambda d: d["outputs"][3].update(stride=0), "key 'outputs[3].stride': must be in [1, inf), got 0"),
    (_set("protocol", "height_range", [64, 64]), "key 'protocol.height_range': expected [low, high] with 0 <= low "
                                                 "< high, got [64, 64]"),
    (_set("protocol", "clip_annotation", 0), "key 'protocol.clip_annotation': must be in [1, inf), got 0"),
    (_set("reference", "gflops", 0), "key 'reference.gflops': must be in (0, inf), got 0"),
    (_set("reference", "map_percent", 848.0), "key 'reference.map_percent': must be in (0, 100], got 848.0"),
    # unknown keys at any level, with the closest known key
    (_set("protocol", "nms_treshold", 0.5), "key 'protocol.nms_treshold': unknown key; did you mean nms_threshold?"),
    (_set("tolerance", {}), "key 'tolerance': unknown key; did you mean tolerances?"),
    (_set("checkpoint", "mirror", ["https://example.org/x.zip"]), "key 'checkpoint.mirror': unknown key; did you "
                                                                  "mean mirrors?"),
    (_set("preprocess", "resize", "keep_aspect", True), "key 'preprocess.resize.keep_aspect': unknown key; did you "
                                                        "mean keep_aspect_ratio?"),
    (_set("preprocess", "ir", "scale", 255), "key 'preprocess.ir.scale': unknown key; expected one of "
                                             "channel_order, mean"),
    (lambda d: d["outputs"][2].update(strid=16), "key 'outputs[2].strid': unknown key; did you mean stride?"),
    (_set("tolerances", "FP32", "default", "min_cos", 0.5), "key 'tolerances.FP32.default.min_cos': unknown key; "
                                                            "did you mean min_cosine?"),
    (_set("tolerances", "FP61", {"default": {"atol": 1, "rtol": 0, "min_cosine": 1}}),
     "key 'tolerances.FP61': unknown key; did you mean FP16?"),
    (_set("gates", "min_box_match_rate", "INT4", 0.5), "key 'gates.min_box_match_rate.INT4': unknown key; did you "
                                                       "mean INT8?"),
    (_set("gates", "min_box_match_rate", "FP8", 0.5), "key 'gates.min_box_match_rate.FP8': unknown key; expected "
                                                      "one of FP32, FP16, FP32@bf16, FP16@bf16, INT8, INT8@bf16"),
    (_set("quantize", "max_drop", -1), "key 'quantize.max_drop': must be in [0, inf), got -1"),
    (_set("quantize", "calibration_images", 0), "key 'quantize.calibration_images': must be in [1, inf), got 0"),
    (_set("quantize", "sample_size", 5), "key 'quantize.sample_size': unknown key; did you mean subset_size?"),
    (lambda d: d["gates"]["ir_vs_mxnet_drop"].pop("INT8"), "key 'gates.ir_vs_mxnet_drop.INT8': missing"),
    (_set("gates", "map_vs_baseline", "rtol", 0.5), "key 'gates.map_vs_baseline.rtol': unknown key; did you mean "
                                                    "atol?"),
    (_set("box_match", "iou_threshold", 0.5), "key 'box_match.iou_threshold': unknown key"),
    (_set("anchors", "scales", "x32", [1, 2]), "key 'anchors.scales.x32': expected a stride (a positive integer)"),
    # Review finding 4: these become file names (checkpoint files, downloads/<archive>, baselines/<name>-...json).
    (_set("checkpoint", "prefix", "../x"), "key 'checkpoint.prefix': expected a plain file name (letters, digits, "
                                           "'.', '_', '+', '-'; no folder, not starting with '.'), got '../x'"),
    (_set("checkpoint", "prefix", "a/b"), "key 'checkpoint.prefix': expected a plain file name"),
    (_set("checkpoint", "archive", "../../x.zip"), "key 'checkpoint.archive': expected a plain file name"),
    (lambda d: d.update(name="../../evil"), "key 'name': expected a plain file name (letters, digits, '.', '_', "
                                            "'+', '-'; no folder, not starting with '.'), got '../../evil'"),
    (lambda d: d.update(name="a/b"), "key 'name': expected a plain file name"),
    (lambda d: d.update(name=".."), "key 'name': expected a plain file name"),
    (lambda d: d.update(name="a\\b"), "key 'name': expected a plain file name"),
])
def test_card_values_are_checked(tmp_path, mutate, message):
    path = _write(tmp_path, mutate)
    with pytest.raises(CardError) as e:
        load_card(path)
    assert str(e.value).startswith(f"{path}: {message}"), str(e.value)
    assert "\n" not in str(e.value)


def test_boundaries_that_are_allowed(tmp_path):
    def edge(d):
        d["tolerances"]["FP32"]["default"]["min_cosine"] = 1.0  # bit-exact cosine may be required
        d["gates"]["min_box_match_rate"]["FP32"] = 1  # every detection reproduced
        d["protocol"]["height_range"] = [0, 1024]
        d["reference"]["map_percent"] = 100

    card = load_card(_write(tmp_path, edge))
    assert card.tolerance("FP32", "x").min_cosine == 1.0 and card.gates.min_box_match_rate["FP32"] == 1.0
    assert card.protocol.height_range == (0.0, 1024.0)


def test_box_match_settings_and_the_old_key_named(tmp_path, card):
    assert (card.box_match.min_score, card.box_match.iou) == (0.1, 0.9)
    assert (card.gates.min_box_match_rate["FP32"], card.gates.min_box_match_rate["FP16"]) == (0.99, 0.9)
    old = _write(tmp_path, lambda d: d.update(detection_parity=d.pop("box_match")))
    with pytest.raises(CardError, match="detection_parity.*renamed to box_match") as e:
        load_card(old)
    assert "\n" not in str(e.value) and e.value.exit_code == 2


# ------------------------------------------------------------------- file encoding, folders, duplicate keys, sizes


@pytest.mark.parametrize("content, reason", [
    ("name: caf\xe9\n".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 9)"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8 text (byte 0x89 at offset 0)"),
])
def test_undecodable_card_is_a_one_line_card_error(tmp_path, content, reason):
    path = tmp_path / "card.yaml"
    path.write_bytes(content)
    with pytest.raises(CardError) as e:
        load_card(path)
    assert str(e.value) == f"{path}: {reason}; expected a YAML pipeline file"
    assert e.value.exit_code == 2


def test_a_folder_as_the_card_is_a_one_line_card_error(tmp_path):
    with pytest.raises(CardError) as e:
        load_card(tmp_path)
    assert str(e.value) == f"{tmp_path}: is a directory, expected a YAML pipeline file"
    assert e.value.exit_code == 2


def test_the_cli_reports_a_binary_or_folder_card_in_one_line_exit_2(tmp_path):
    from typer.testing import CliRunner

    from ssh_toolkit.cli import app

    binary = tmp_path / "card.yaml"
    binary.write_bytes(b"\xff\xfe\x00binary")
    for card in (binary, tmp_path):
        r = CliRunner().invoke(app, ["convert", "-p", str(card), "-w", str(tmp_path / "ws")])
        assert r.exit_code == 2, r.output
        assert r.output.count("\n") == 1 and r.output.startswith(f"ssh-toolkit: error: {card}: "), r.output


def test_duplicate_keys_are_refused_naming_key_and_line(tmp_path):
    text = DEFAULT_CARD.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if ln.startswith("  size: 640"))
    lines.insert(at + 1, "  size: 320\n")
    path = tmp_path / "card.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(CardError) as e:
        load_card(path)
    assert str(e.value) == f"{path}: key 'input.size': duplicate key at line {at + 2} (first at line {at + 1})"
    top = tmp_path / "top.yaml"
    top.write_text(text + "name: other\n", encoding="utf-8")
    with pytest.raises(CardError, match=r"key 'name': duplicate key at line \d+ \(first at line 3\)"):
        load_card(top)


@pytest.mark.parametrize("size", [100, 48])
def test_input_size_must_be_a_multiple_of_the_largest_stride_at_load(tmp_path, size):
    path = _write(tmp_path, _set("input", "size", size))
    with pytest.raises(CardError) as e:
        load_card(path)
    assert str(e.value) == (f"{path}: key 'input.size': must be a multiple of 32 (the largest output stride), "
                            f"got {size}")


def test_input_size_a_multiple_of_the_largest_stride_loads(tmp_path):
    assert load_card(_write(tmp_path, _set("input", "size", 320))).input.size == 320


def test_localize_section_is_checked_and_optional(tmp_path):
    assert load_card().localize.threshold["FP32@bf16"] == 0.1
    for mutate, message in [
        (_set("localize", "threshold", "FP8", 1e-3), "key 'localize.threshold.FP8': unknown key"),
        (_set("localize", "threshold", "FP16", 0), "key 'localize.threshold.FP16': must be in (0, inf), got 0"),
        (_set("localize", "batch_mb", 0.5), "key 'localize.batch_mb': expected an integer, got 0.5"),
        (_set("localize", "pass_mb", 64), "key 'localize.pass_mb': unknown key"),
    ]:
        with pytest.raises(CardError, match=re.escape(message)):
            load_card(_write(tmp_path, mutate))
    # A card written before the section existed still loads; localize then says what is missing.
    assert load_card(_write(tmp_path, lambda d: d.pop("localize"))).localize is None


def test_quantize_section_gives_int8_its_limits_and_reported_only_parity(card):
    from ssh_toolkit.card import REPORTED_ONLY

    assert (card.quantize.max_drop, card.quantize.calibration_images, card.quantize.subset_size,
            card.quantize.seed) == (1.0, 300, 300, 0)
    assert {"INT8", "INT8@bf16"} <= set(card.gates.ir_vs_mxnet_drop) == set(card.gates.min_box_match_rate)
    assert card.parity_reported_only("INT8") and card.parity_reported_only("INT8@bf16")
    assert not card.parity_reported_only("FP32")
    assert card.tolerance("INT8", "rpn_bbox_pred_stride8") is REPORTED_ONLY
    assert card.tolerance("FP32", "rpn_bbox_pred_stride8").atol == 1e-3


def test_a_card_without_quantize_has_no_int8(tmp_path):
    def drop_quantize(d, keep_limits=False):
        del d["quantize"]
        if not keep_limits:
            for key in ("ir_vs_mxnet_drop", "min_box_match_rate"):
                d["gates"][key] = {k: v for k, v in d["gates"][key].items() if not k.startswith("INT8")}

    c = load_card(_write(tmp_path, drop_quantize))
    assert c.quantize is None and "INT8" not in c.gates.ir_vs_mxnet_drop
    assert not c.parity_reported_only("INT8")
    with pytest.raises(CardError, match="key 'tolerances' has no entry|'tolerances' has no entry for precision 'INT8'"):
        c.tolerance("INT8", "rpn_bbox_pred_stride8")
    with pytest.raises(CardError, match=r"key 'gates.ir_vs_mxnet_drop.INT8': unknown key"):
        load_card(_write(tmp_path, lambda d: drop_quantize(d, keep_limits=True)))
