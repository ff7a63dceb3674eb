"""The OpenVINO runner on the 2026 runtime: async inference and teardown, and IRs it cannot read."""

import subprocess
import sys

import numpy as np
import pytest
from conftest import SMALL

from ssh_toolkit.errors import BackendError
from ssh_toolkit.runners.openvino import OpenVINORunner

pytestmark = pytest.mark.slow  # the standin_ws fixture runs Model Optimizer

LOOP = """
import sys, numpy as np
from ssh_toolkit.runners.openvino import OpenVINORunner
xml, names = sys.argv[1], sys.argv[2].split(",")
x = np.random.default_rng(0).random((1, 3, {size}, {size}), dtype=np.float32)
for round in range(12):
    got = []
    with OpenVINORunner(xml, names) as r:
        r.infer_many(((i, x) for i in range(8)), lambda k, raw: got.append(k))
    assert sorted(got) == list(range(8)), got
print("ok")
"""


def test_async_inference_and_teardown_never_hang(card, standin_ws):
    """Once in a few runs, an AsyncInferQueue with a Python callback deadlocked the compiled model's teardown
    on OpenVINO 2026 (worker thread waiting for the GIL, main thread joining it)."""
    _, _, irs = standin_ws
    code = LOOP.format(size=SMALL)
    proc = subprocess.run([sys.executable, "-c", code, str(irs["FP32"].xml), ",".join(card.output_names)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_async_results_equal_sync_results_in_input_order(card, standin_ws):
    _, _, irs = standin_ws
    rng = np.random.default_rng(1)
    xs = [rng.random((1, 3, SMALL, SMALL), dtype=np.float32) * 255 for _ in range(5)]
    got = []
    with OpenVINORunner(irs["FP32"].xml, card.output_names, jobs=2) as r:
        sync = [r.infer(x) for x in xs]
        r.infer_many(enumerate(xs), lambda k, raw: got.append((k, raw)))
    assert [k for k, _ in got] == list(range(5))
    for (_, a), b in zip(got, sync):
        for name in card.output_names:
            np.testing.assert_array_equal(a.arrays[name], b.arrays[name])
        assert a.seconds > 0


@pytest.mark.parametrize("damage,reason", [
    (lambda text: text[: len(text) // 2], "Error parsing"),  # truncated
    (lambda text: text.replace('version="11"', 'version="99"'), "Unable to read the model"),
])
def test_an_ir_the_runtime_cannot_read_is_one_line_naming_the_file(card, standin_ws, tmp_path, damage, reason,
                                                                   capfd):
    _, _, irs = standin_ws
    xml = tmp_path / "sshb.xml"
    xml.write_text(damage(irs["FP32"].xml.read_text()))
    (tmp_path / "sshb.bin").write_bytes(irs["FP32"].bin.read_bytes())
    with pytest.raises(BackendError) as e:
        OpenVINORunner(xml, card.output_names).activate()
    message = str(e.value)
    assert message.startswith(f"{xml}: OpenVINO cannot read the IR: ") and reason in message, message
    assert "\n" not in message and "Exception from" not in message and ".cpp" not in message
    assert capfd.readouterr().err == ""  # nothing the native frontends printed while probing the file
