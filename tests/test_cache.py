"""The raw-output cache: entries appear whole or not at all, under Ctrl-C, a full disk or concurrent writers."""

from __future__ import annotations

import errno
import gc
import os
import sys
import threading

import numpy as np
import pytest

from ssh_toolkit.cache import RawCache
from ssh_toolkit.model.outputs import RawOutputs

KEY = "ab" + "0" * 62


def _raw(seed=0):
    rng = np.random.default_rng(seed)
    return RawOutputs({"face_rpn_cls_prob_reshape_stride32": rng.random((1, 4, 4, 4), dtype=np.float32),
                       "face_rpn_bbox_pred_stride32": rng.random((1, 8, 4, 4), dtype=np.float32)}, "mxnet", 0.25)


def test_put_then_get_round_trips(tmp_path):
    cache = RawCache(tmp_path, "model")
    raw = _raw()
    cache.put(KEY, raw, (480, 640))
    got, hw = cache.get(KEY, "mxnet")
    assert hw == (480, 640) and got.seconds == 0.25
    assert got.arrays.keys() == raw.arrays.keys()
    for k in raw.arrays:
        np.testing.assert_array_equal(got.arrays[k], raw.arrays[k])
    assert os.listdir(cache.path(KEY).parent) == [cache.path(KEY).name]


def test_ctrl_c_inside_the_write_leaves_no_entry_and_prints_nothing_later(tmp_path, monkeypatch):
    """Defect 12: Ctrl-C inside np.savez left its zip open; collecting it later wrote to the closed file and
    printed 'Exception ignored ... ValueError: seek of closed file' on top of the one-line message."""
    calls = {"n": 0}
    real = np.lib.format.write_array

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    monkeypatch.setattr(np.lib.format, "write_array", interrupted)
    cache = RawCache(tmp_path, "model")
    with pytest.raises(KeyboardInterrupt):
        cache.put(KEY, _raw(), (480, 640))
    sys.last_value = sys.last_traceback = None  # what an interactive session would keep alive
    gc.collect()
    assert [f"{u.exc_type.__name__}: {u.exc_value}" for u in unraisable] == []
    assert not cache.has(KEY)
    assert list(cache.path(KEY).parent.iterdir()) == []  # no partial entry, no temporary file


def test_disk_full_leaves_no_entry_and_names_the_entry(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np.lib.format, "write_array", full)
    cache = RawCache(tmp_path, "model")
    with pytest.raises(OSError) as info:
        cache.put(KEY, _raw(), (480, 640))
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(cache.path(KEY))
    assert list(cache.path(KEY).parent.iterdir()) == []


def test_concurrent_writers_of_the_same_entry_both_succeed(tmp_path):
    cache = RawCache(tmp_path, "model")
    errors = []

    def write(seed):
        try:
            for _ in range(20):
                cache.put(KEY, _raw(seed), (480, 640))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got, _ = cache.get(KEY, "mxnet")  # one writer's complete entry
    assert any(all(np.array_equal(got.arrays[k], _raw(s).arrays[k]) for k in got.arrays) for s in range(4))
    assert os.listdir(cache.path(KEY).parent) == [cache.path(KEY).name]


def test_an_entry_damaged_after_the_check_is_named_and_deleted_when_read(tmp_path):
    from ssh_toolkit.cache import CacheEntryError

    spec = {"face_rpn_cls_prob_reshape_stride32": (1, None, 4, 4), "face_rpn_bbox_pred_stride32": (1, None, 4, 4)}
    cache = RawCache(tmp_path, "model", spec)
    raw = _raw()
    cache.put(KEY, RawOutputs({"face_rpn_cls_prob_reshape_stride32": raw.arrays["face_rpn_cls_prob_reshape_stride32"]},
                              "mxnet"), (480, 640))
    assert cache.problem(KEY) == f"{cache.path(KEY)}: lacks output face_rpn_bbox_pred_stride32"
    with pytest.raises(CacheEntryError) as info:
        cache.get(KEY, "mxnet")
    assert str(info.value) == (f"{cache.path(KEY)}: lacks output face_rpn_bbox_pred_stride32; deleted it, run the "
                               f"same command again to infer that image again")
    assert not cache.has(KEY)
    cache.put(KEY, raw, (0, 640))
    assert cache.problem(KEY) == f"{cache.path(KEY)}: original image size [0, 640] is not two positive numbers"
    cache.put(KEY, raw, (480, 640))
    assert cache.problem(KEY) is None and cache.get(KEY, "mxnet")[1] == (480, 640)
