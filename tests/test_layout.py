"""The layout's promises, checked by walking the imports: pure folders stay pure, no upward imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ssh_toolkit"
PURE = ("model", "metric")
# What a pure module may import from the toolkit: other pure modules, the card's data types, the errors.
PURE_MAY_IMPORT = {"ssh_toolkit.model", "ssh_toolkit.metric", "ssh_toolkit.card", "ssh_toolkit.errors"}
# Outside modules that mean I/O, processes, progress bars or runtimes.
IMPURE = {"os", "io", "shutil", "subprocess", "tempfile", "urllib", "http", "socket", "pathlib", "glob",
          "zipfile", "tqdm", "pandas", "matplotlib", "scipy.io", "mxnet", "openvino", "logging", "sys"}


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    found = []
    # pandas may be imported inside a record's own to_frame()/to_pandas() (supervision's habit), nowhere else
    exempt = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name in ("to_frame", "to_pandas")
              for n in ast.walk(f) if isinstance(n, ast.ImportFrom | ast.Import)
              and all(a.name == "pandas" for a in n.names)}
    for node in ast.walk(tree):
        if id(node) in exempt:
            continue
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((name, node.lineno))
    return found


PURE_FILES = [p for folder in PURE for p in sorted((PKG / folder).glob("*.py"))]


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pure_folders_import_no_io(path):
    bad = []
    for name, line in _imports(path):
        if name.startswith("ssh_toolkit"):
            if not any(name == ok or name.startswith(ok + ".") for ok in PURE_MAY_IMPORT):
                bad.append(f"line {line}: {name}")
        elif any(name == m or name.startswith(m + ".") for m in IMPURE):
            bad.append(f"line {line}: {name}")
    assert not bad, f"{path.relative_to(PKG)} imports I/O or impure modules: {bad}"


def test_the_walk_sees_a_forbidden_import(tmp_path):
    """The checker itself: a pure-looking module that imports tqdm is caught."""
    fake = PKG / "metric" / "_probe_for_layout_test.py"
    fake.write_text("from tqdm import tqdm\nfrom ..fileio import write_json\n")
    try:
        names = [n for n, _ in _imports(fake)]
        assert names == ["tqdm", "ssh_toolkit.fileio"]
    finally:
        fake.unlink()


def test_no_module_named_like_a_function_it_exports():
    """The package-level ``evaluate`` function does not clash with a module of the same name."""
    import ssh_toolkit

    assert not (PKG / "evaluate.py").exists()
    assert callable(ssh_toolkit.evaluate)
