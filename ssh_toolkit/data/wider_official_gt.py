"""Reading the official WIDER FACE ground truth (``eval_tools/ground_truth/*.mat``) for the official AP.

The files and their layout are described in :mod:`ssh_toolkit.metric.wider_official`, which holds the pure
kernel; this module is the I/O half.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputDataError
from ..metric.wider_official import SETTINGS, OfficialGroundTruth

FACE_FILE = "wider_face_val.mat"
SETTING_FILES = {s: f"wider_{s}_val.mat" for s in SETTINGS}


def load_official_ground_truth(mat_dir: str | Path) -> OfficialGroundTruth:
    """Read ``wider_face_val.mat`` and the three ``wider_<setting>_val.mat`` files from ``mat_dir``."""
    mat_dir = Path(mat_dir)
    needed = [FACE_FILE, *SETTING_FILES.values()]
    if not mat_dir.is_dir():
        raise InputDataError(f"{mat_dir}: folder of the official WIDER FACE ground truth not found "
                             f"(expected {', '.join(needed)})")
    for name in needed:
        if not (mat_dir / name).is_file():
            raise InputDataError(f"{mat_dir / name}: missing; the official evaluation needs "
                                 f"{', '.join(needed)} (eval_tools/ground_truth of the WIDER FACE release)")

    face = _MatFile(mat_dir / FACE_FILE)
    event_cells = face.cells(face["event_list"], "event_list")
    events = [face.string(c, f"event_list{{{e + 1}}}") for e, c in enumerate(event_cells)]
    names = face.nested(face["file_list"], "file_list", len(events))
    bbx = face.nested(face["face_bbx_list"], "face_bbx_list", len(events))
    boxes: dict[str, np.ndarray] = {}
    order: list[list[str]] = []
    for e, event in enumerate(events):
        if len(bbx[e]) != len(names[e]):
            raise face.fail(f"face_bbx_list{{{e + 1}}} has {len(bbx[e])} images but file_list{{{e + 1}}} has "
                            f"{len(names[e])}")
        ids = []
        for j, (cell, box_cell) in enumerate(zip(names[e], bbx[e])):
            where = f"{{{e + 1}}}{{{j + 1}}}"
            identifier = f"{event}/{face.string(cell, 'file_list' + where)}.jpg"
            if identifier in boxes:
                raise face.fail(f"image {identifier} listed twice")
            boxes[identifier] = face.boxes(box_cell, "face_bbx_list" + where)
            ids.append(identifier)
        order.append(ids)

    keep: dict[str, dict[str, np.ndarray]] = {}
    for setting, name in SETTING_FILES.items():
        mat = _MatFile(mat_dir / name)
        lists = mat.nested(mat["gt_list"], "gt_list", len(events))
        keep[setting] = {}
        for e, ids in enumerate(order):
            if len(lists[e]) != len(ids):
                raise mat.fail(f"gt_list{{{e + 1}}} has {len(lists[e])} images but {FACE_FILE} has "
                               f"{len(ids)}")
            for j, (identifier, cell) in enumerate(zip(ids, lists[e])):
                keep[setting][identifier] = mat.indices(cell, len(boxes[identifier]),
                                                        f"gt_list{{{e + 1}}}{{{j + 1}}}")
    return OfficialGroundTruth(boxes, keep, str(mat_dir))


class _MatFile:
    """One loaded ``.mat`` file and helpers that unwrap its cell arrays, failing with the file named."""

    def __init__(self, path: Path) -> None:
        import scipy.io

        self.path = path
        try:
            self.data = scipy.io.loadmat(str(path))
        except Exception as e:  # scipy raises many types (ValueError, MatReadError, OSError, ...)
            raise InputDataError(f"{path}: cannot read MATLAB file ({type(e).__name__}: {e})") from None

    def fail(self, message: str) -> InputDataError:
        return InputDataError(f"{self.path}: {message}")

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.data:
            has = ", ".join(k for k in self.data if not k.startswith("__"))
            raise self.fail(f"no variable {key!r} (has {has})")
        return self.data[key]

    def cells(self, value, where: str) -> list:
        if not (isinstance(value, np.ndarray) and value.dtype == object):
            raise self.fail(f"{where}: expected a cell array, got {type(value).__name__} "
                            f"{getattr(value, 'dtype', '')}")
        return value.ravel(order="F").tolist()  # MATLAB linear order

    def nested(self, value, where: str, n_events: int) -> list[list]:
        """An (E,1) cell of (n,1) cells -> E lists of cell contents."""
        outer = self.cells(value, where)
        if len(outer) != n_events:
            raise self.fail(f"{where} has {len(outer)} events, expected {n_events} (as event_list)")
        return [self.cells(c, f"{where}{{{e + 1}}}") for e, c in enumerate(outer)]

    def string(self, value, where: str) -> str:
        while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
            value = value.reshape(-1)[0]
        if isinstance(value, str):
            return value
        if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size == 1:
            return str(value.reshape(-1)[0])
        shape = getattr(value, "shape", "")
        raise self.fail(f"{where}: expected a string, got {type(value).__name__} {shape}")

    def boxes(self, value, where: str) -> np.ndarray:
        a = np.asarray(value)
        if a.dtype.kind not in "biuf":
            raise self.fail(f"{where}: expected a numeric (k, 4) box array, got {a.dtype}")
        if a.size == 0:
            return np.zeros((0, 4), np.float64)
        if a.ndim != 2 or a.shape[1] != 4:
            raise self.fail(f"{where}: expected a (k, 4) x y w h box array, got shape {a.shape}")
        return a.astype(np.float64)

    def indices(self, value, n_faces: int, where: str) -> np.ndarray:
        a = np.asarray(value)
        if a.size and a.dtype.kind not in "biuf":
            raise self.fail(f"{where}: expected numeric face indices, got {a.dtype}")
        a = a.reshape(-1).astype(np.float64)
        if a.size and (np.any(a != np.round(a)) or a.min() < 1 or a.max() > n_faces):
            raise self.fail(f"{where}: expected 1-based face indices in 1..{n_faces}, got {a.tolist()}")
        return a.astype(np.int64) - 1
