"""The package layout: the linear half never imports torch, and no private name crosses a file."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "moecl"


@pytest.mark.parametrize("code", [
    "import moecl",
    "import moecl.experiments, moecl.theory, moecl.cli",
    "import sys; sys.argv = ['moecl', 'list']; import moecl.cli as c; c.main()",
])
def test_linear_half_does_not_import_torch(code):
    """`import moecl` and `moecl list` stay fast and torch-free (torch loads with `moecl.deep`)."""
    check = f"{code}\nimport sys\nassert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_deep_half_does_import_torch():
    """The check above can fail: importing `moecl.deep` loads torch."""
    code = "import moecl.deep, sys; assert 'torch' in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def _private_imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(PACKAGE.parent)}: from {node.module} import {alias.name}")
    return found


def test_no_private_name_is_imported_across_files():
    offenders = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _private_imports(path)]
    assert not offenders, "\n".join(offenders)


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
