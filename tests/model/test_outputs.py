import numpy as np
import pytest

from ssh_toolkit.errors import BackendError
from ssh_toolkit.model.outputs import RawOutputs, canonical_name


@pytest.mark.parametrize("native", ["rpn_bbox_pred_stride8", "rpn_bbox_pred_stride8:0",
                                    "rpn_bbox_pred_stride8_output"])
def test_canonical_name_drops_backend_suffixes(native):
    assert canonical_name(native) == "rpn_bbox_pred_stride8"


def test_from_named_orders_by_expected_and_rejects_missing_or_clashing():
    a, b = np.zeros(2), np.ones(3)
    raw = RawOutputs.from_named([("b:0", b), ("a_output", a)], "ir", expected=["a", "b"])
    assert list(raw.arrays) == ["a", "b"] and raw["b"] is not None
    with pytest.raises(BackendError, match=r"lacks expected output\(s\) \['c'\]"):
        RawOutputs.from_named([("a:0", a)], "ir", expected=["a", "c"])
    with pytest.raises(BackendError, match="same name 'a'"):
        RawOutputs.from_named([("a:0", a), ("a_output", a)], "ir")
