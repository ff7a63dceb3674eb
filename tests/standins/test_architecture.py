"""The SSH symbol against the spec: parameter count, layer names, output names, order and shapes.

Only ``infer_shape`` and graph inspection here (cheap); forward passes are in test_synthesize.py.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from ssh_toolkit.card import OutputSpec
from ssh_toolkit.errors import CardError
from ssh_toolkit.model.outputs import canonical_name
from ssh_toolkit.standins.architecture import (
    build_ssh_symbol,
    count_by_part,
    count_parameters,
    default_outputs,
    parameter_shapes,
)

SPEC_PARAMS = 19_768_420
SPEC_PARTS = {
    "vgg16": 14_714_688,
    "reductions": 131_328,
    "upsampling": 2_048,
    "ssh_m1_conv": 147_584,
    "ssh_m1_det": 332_160,
    "ssh_m2_det": 2_212_608,
    "ssh_m3_det": 2_212_608,
    "heads": 15_396,
}
SPEC_ORDER = (
    "rpn_cls_prob_reshape_stride32", "rpn_bbox_pred_stride32",
    "rpn_cls_prob_reshape_stride16", "rpn_bbox_pred_stride16",
    "rpn_cls_prob_reshape_stride8", "rpn_bbox_pred_stride8",
)


@pytest.fixture(scope="module")
def symbol(card):
    return build_ssh_symbol(card)


@pytest.fixture(scope="module")
def nodes(symbol):
    """Graph nodes by name: {"op": ..., "attrs": {...}, "inputs": [names]}."""
    graph = json.loads(symbol.tojson())
    names = [n["name"] for n in graph["nodes"]]
    return {n["name"]: {"op": n["op"], "attrs": n.get("attrs", {}),
                        "inputs": [names[i[0]] for i in n["inputs"]]}
            for n in graph["nodes"]}


def test_parameter_count_is_the_spec_total(symbol):
    assert count_parameters(parameter_shapes(symbol)) == SPEC_PARAMS


def test_parameter_count_per_part(symbol):
    parts = count_by_part(parameter_shapes(symbol))
    assert parts == SPEC_PARTS
    assert sum(parts.values()) == SPEC_PARAMS


def test_card_reference_params_match(card, symbol):
    shapes = parameter_shapes(symbol, card.input.shape(), card.input.name)
    assert count_parameters(shapes) == card.reference_params


def test_count_parameters_accepts_a_list_of_shapes():
    assert count_parameters([(64, 3, 3, 3), (64,)]) == 1792
    assert count_parameters({}) == 0


def test_outputs_in_card_order(card, symbol):
    names = tuple(canonical_name(n) for n in symbol.list_outputs())
    assert names == card.output_names == SPEC_ORDER


def test_without_card_outputs_are_the_spec_defaults():
    sym = build_ssh_symbol()
    assert tuple(canonical_name(n) for n in sym.list_outputs()) == SPEC_ORDER
    assert tuple(n for n, _, _ in default_outputs()) == SPEC_ORDER
    assert sym.list_arguments()[0] == "data"


@pytest.mark.parametrize("size", [640, 128])
def test_output_shapes(card, symbol, size):
    _, out_shapes, aux_shapes = symbol.infer_shape(data=(1, 3, size, size))
    assert aux_shapes == []
    expected = []
    for o in card.outputs:
        channels = 4 if o.kind == "scores" else 8
        expected.append((1, channels, size // o.stride, size // o.stride))
    assert [tuple(s) for s in out_shapes] == expected


def test_output_shapes_at_640_are_the_spec_ones(symbol):
    _, out_shapes, _ = symbol.infer_shape(data=(1, 3, 640, 640))
    assert [tuple(s) for s in out_shapes] == [
        (1, 4, 20, 20), (1, 8, 20, 20), (1, 4, 40, 40), (1, 8, 40, 40), (1, 4, 80, 80), (1, 8, 80, 80)]


def test_size_not_a_multiple_of_32_binds_through_the_crop(symbol):
    _, out_shapes, _ = symbol.infer_shape(data=(1, 3, 600, 600))
    assert [tuple(s)[2:] for s in out_shapes] == [(18, 18)] * 2 + [(37, 37)] * 2 + [(74, 74)] * 2


def test_backbone_layer_names(nodes):
    convs = [f"conv{g}_{i}" for g, n in enumerate((2, 2, 3, 3, 3), start=1) for i in range(1, n + 1)]
    assert len(convs) == 13
    for name in convs:
        assert nodes[name]["op"] == "Convolution"
        assert nodes[name]["attrs"]["kernel"] == "(3, 3)" and nodes[name]["attrs"]["pad"] == "(1, 1)"
    for name in ("pool1", "pool2", "pool3", "pool4", "pool5"):
        assert nodes[name]["op"] == "Pooling"
        assert nodes[name]["attrs"]["pool_type"] == "max"
    assert nodes["relu4_3"]["op"] == nodes["relu5_3"]["op"] == "Activation"
    assert nodes["pool5"]["inputs"] == ["relu5_3"]


def test_neck(nodes):
    up = nodes["ssh_m2_red_upsampling"]
    assert up["op"] == "Deconvolution"
    assert up["attrs"]["num_group"] == "128" and up["attrs"]["num_filter"] == "128"
    assert up["attrs"]["no_bias"] == "True"
    geometry = (up["attrs"]["kernel"], up["attrs"]["stride"], up["attrs"]["pad"])
    assert geometry == ("(4, 4)", "(2, 2)", "(1, 1)")
    crops = [n for n in nodes.values() if n["op"] == "Crop"]
    assert len(crops) == 1 and crops[0]["inputs"][1] == "ssh_m2_red_upsampling"
    for name, src in (("ssh_m1_red_conv", "relu4_3"), ("ssh_m2_red_conv", "relu5_3")):
        assert nodes[name]["attrs"]["kernel"] == "(1, 1)" and nodes[name]["inputs"][0] == src
    assert nodes["ssh_m1_conv"]["attrs"]["num_filter"] == "128"


@pytest.mark.parametrize("module,filters", [("ssh_m1_det", 128), ("ssh_m2_det", 256), ("ssh_m3_det", 256)])
def test_detection_module_layers(nodes, module, filters):
    half = str(filters // 2)
    assert nodes[f"{module}_conv1"]["attrs"]["num_filter"] == str(filters)
    for suffix in ("context_conv1", "context_conv2", "context_conv3_1", "context_conv3_2"):
        assert nodes[f"{module}_{suffix}"]["op"] == "Convolution"
        assert nodes[f"{module}_{suffix}"]["attrs"]["num_filter"] == half


def test_module_inputs(nodes):
    assert nodes["ssh_m1_det_conv1"]["inputs"][0].startswith("ssh_m1_conv")
    assert nodes["ssh_m2_det_conv1"]["inputs"][0] == "relu5_3"
    assert nodes["ssh_m3_det_conv1"]["inputs"][0] == "pool5"


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_heads_and_test_time_softmax(nodes, stride):
    assert nodes[f"rpn_cls_score_stride{stride}"]["attrs"]["num_filter"] == "4"
    assert nodes[f"rpn_bbox_pred_stride{stride}"]["attrs"]["num_filter"] == "8"
    prob = nodes[f"rpn_cls_prob_reshape_stride{stride}"]
    assert prob["op"] == "Reshape"
    softmax = nodes[prob["inputs"][0]]
    assert softmax["op"] == "SoftmaxActivation" and softmax["attrs"]["mode"] == "channel"
    pairs = nodes[softmax["inputs"][0]]
    assert pairs["op"] == "Reshape" and pairs["attrs"]["shape"] == "(0, 2, -1, 0)"
    assert pairs["inputs"] == [f"rpn_cls_score_stride{stride}"]


def test_output_names_come_from_the_card(card):
    renamed = tuple(OutputSpec(f"{o.name}_x", o.kind, o.stride) for o in reversed(card.outputs))
    sym = build_ssh_symbol(dataclasses.replace(card, outputs=renamed))
    assert tuple(canonical_name(n) for n in sym.list_outputs()) == tuple(o.name for o in renamed)


def test_a_card_without_the_three_strides_is_rejected(card):
    with pytest.raises(CardError, match="strides"):
        build_ssh_symbol(dataclasses.replace(card, outputs=card.outputs[:4]))
