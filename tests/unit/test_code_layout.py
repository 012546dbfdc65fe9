"""The code's structure, checked: layers, cycles, imports at the top, lint.

The layers and the absence of import cycles are import-linter contracts in
pyproject.toml; ruff holds the one lint configuration.  `make test` runs both
before pytest; these tests run them again so a plain `pytest` run shows a
broken layer too, and add what neither tool checks: no svclab import placed
inside a function (where it would hide a dependency from both).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("base", "topo", "agents", "controlplane", "labd", "probes", "experiments", "svclab")
TEST_HELPERS = ("support", "labtools")
BIN = Path(sys.executable).parent


def _python_files():
    for folder in (*PACKAGES, "tests", "benchmarks"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def _nested_project_imports(path: Path, root: Path = ROOT) -> list[str]:
    """`file:line module` for every svclab import that is not at module level."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        if id(node) in top:
            continue
        for module in modules:
            if module.split(".")[0] in PACKAGES + TEST_HELPERS:
                found.append(f"{path.relative_to(root)}:{node.lineno} {module}")
    return found


def test_no_svclab_import_is_hidden_inside_a_function():
    nested = [hit for path in _python_files() for hit in _nested_project_imports(path)]
    assert nested == [], "imports placed inside functions or classes:\n" + "\n".join(nested)


def test_the_nested_import_check_sees_one(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\n\ndef f():\n    from base.errors import SvclabError\n"
                      "    import json\n    return SvclabError, json, os\n")
    assert _nested_project_imports(sample, tmp_path) == ["sample.py:5 base.errors"]


@pytest.mark.parametrize("argv", [
    [str(BIN / "lint-imports"), "--no-cache"],
    [str(BIN / "ruff"), "check", "--no-cache", "."],
], ids=["layers-contract", "ruff"])
def test_tool_passes(argv):
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
