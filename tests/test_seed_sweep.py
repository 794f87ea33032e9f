"""scripts/seed_sweep.py: seeds, chapters, data settings, nbval output and the tables (one tiny run)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_sweep():
    spec = importlib.util.spec_from_file_location("seed_sweep", ROOT / "scripts" / "seed_sweep.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["seed_sweep"] = module
    spec.loader.exec_module(module)
    return module


sweep = _load_sweep()

NBVAL_FAILURE = """\
.F.F                                                                     [100%]
=================================== FAILURES ===================================
_______________________________ book/x.md::Cell 3 ________________________________
\x1b[91mNotebook cell execution failed\x1b[0m
\x1b[94mCell 3: Cell execution caused an exception

Input:
\x1b[0massert z > 3, "the effect should show"

\x1b[94mTraceback:\x1b[0m

\x1b[31mAssertionError\x1b[39m                            Traceback (most recent call last)
\x1b[36mCell\x1b[39m In[3], line 1
----> 1 assert z > 3, "the effect should show"

\x1b[31mAssertionError\x1b[39m: the effect should show
_______________________________ book/x.md::Cell 5 ________________________________
\x1b[91mNotebook cell execution failed\x1b[0m
NameError                                 Traceback (most recent call last)
NameError: name 'z' is not defined
=========================== short test summary info ============================
FAILED book/x.md::Cell 3 - \x1b[91mNotebook cell execution failed\x1b[0m
FAILED book/x.md::Cell 5 - \x1b[91mNotebook cell execution failed\x1b[0m
2 failed, 2 passed in 0.92s
"""


@pytest.mark.parametrize(
    ("text", "seeds"),
    [("0-9", list(range(10))), ("0,3,5", [0, 3, 5]), ("5,0-2,2", [0, 1, 2, 5]), (" 7 ", [7])],
)
def test_seeds_from_ranges_and_lists(text, seeds):
    assert sweep.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-", "-2", "1.5"])
def test_bad_seeds_are_refused(text):
    with pytest.raises(ValueError, match="seeds"):
        sweep.parse_seeds(text)


def test_default_chapters_are_the_notebooks_of_the_toc():
    chapters = sweep.toc_chapters()
    toc = (ROOT / "_toc.yml").read_text()
    assert chapters, "no chapters found in _toc.yml"
    for path in chapters:
        assert path.parent.name == "book" and f"book/{path.stem}" in toc
    assert "intro" not in {path.stem for path in chapters}  # plain Markdown, no cells to run
    assert "drift" in {path.stem for path in chapters}


def test_chapters_by_name_or_path():
    expected = (ROOT / "book" / "drift.md").resolve()
    for name in ("drift", "drift.md", "book/drift.md", str(expected)):
        assert sweep.resolve_chapter(name) == expected
    with pytest.raises(ValueError, match="no chapter"):
        sweep.resolve_chapter("no-such-chapter")


def test_data_settings(tmp_path):
    both = sweep.data_settings(str(tmp_path), True, environ={})
    assert [setting.directory for setting in both] == [str(tmp_path.resolve()), None]
    base = {"MOECL_DATA": "/elsewhere", "PATH": "/bin"}
    assert both[0].environment(base)["MOECL_DATA"] == str(tmp_path.resolve())
    assert "MOECL_DATA" not in both[1].environment(base) and both[1].environment(base)["PATH"] == "/bin"
    (inherited,) = sweep.data_settings(None, False, environ=base)
    assert inherited.environment(base) == base and "/elsewhere" in inherited.label
    (unset,) = sweep.data_settings(None, False, environ={})
    assert "unset" in unset.label
    with pytest.raises(ValueError, match="not a directory"):
        sweep.data_settings(str(tmp_path / "missing"), False)


def test_failure_names_the_first_failing_cell_and_its_assertion():
    cell, message, others = sweep.parse_failure(NBVAL_FAILURE)
    assert (cell, message, others) == (3, "AssertionError: the effect should show", 1)


def test_failure_without_an_assertion_reports_the_exception():
    text = NBVAL_FAILURE.split("_" * 31 + " book/x.md::Cell 5")[1].replace("Cell 3", "Cell 9")
    cell, message, _ = sweep.parse_failure("_" * 31 + " book/x.md::Cell 5" + text)
    assert cell == 5 and message == "NameError: name 'z' is not defined"
    assert sweep.parse_failure("ERROR: file or directory not found: x.md\n") == (
        None, "ERROR: file or directory not found: x.md", 0)


def test_tables_put_chapters_in_rows_and_seeds_in_columns():
    table = sweep.Table("without data", ["drift", "gate"], [0, 1, 2], stamp="2026-12-01, commit abc")
    for seed in (0, 1, 2):
        table.cells["drift", seed] = sweep.Outcome("drift", seed, "without data", True)
    table.cells["gate", 0] = sweep.Outcome("gate", 0, "without data", True)
    table.cells["gate", 1] = sweep.Outcome("gate", 1, "without data", False, 4, "AssertionError: too loose", 2)
    text = table.text().splitlines()
    assert text[0] == "without data"
    assert text[1].split() == ["chapter", "0", "1", "2", "passed"]
    assert text[3].split() == ["drift", "passed", "passed", "passed", "3/3"]
    assert text[4].split() == ["gate", "passed", "cell", "4", "[1]", "-", "1/3"]
    assert text[5] == "[1] gate, book seed 1: cell 4: AssertionError: too loose (and 2 later cells)"
    markdown = table.markdown().splitlines()
    assert markdown[0] == "### Without data"
    assert markdown[2] == "| chapter | seed 0 | seed 1 | seed 2 | passed | swept |"
    assert markdown[3] == "|---|:-:|:-:|:-:|:-:|---|"
    assert markdown[4] == "| `drift` | passed | passed | passed | 3/3 | 2026-12-01, commit abc |"
    assert markdown[5] == "| `gate` | passed | cell 4 [1] | - | 1/3 | 2026-12-01, commit abc |"
    assert markdown[-1].startswith("- [1] gate, book seed 1: cell 4: AssertionError")
    assert table.failures() == [table.cells["gate", 1]]


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        sweep.main(["--seeds", "9-1"])
    assert exit_info.value.code == 2 and "empty range" in capsys.readouterr().err


TINY = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A claim that holds on even book seeds only

```{code-cell} ipython3
import os
seed = int(os.environ["MOECL_BOOK_SEED"])
```

```{code-cell} ipython3
assert seed % 2 == 0, f"odd book seed {seed}"
```
"""


def test_a_tiny_notebook_under_two_book_seeds(tmp_path, capsys):
    pytest.importorskip("nbval")
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")  # collects .md notebooks
    (tmp_path / "tiny.md").write_text(TINY)
    code = sweep.main([str(tmp_path / "tiny.md"), "--seeds", "0,1", "--jobs", "2", "--no-data",
                       "--python", sys.executable])
    output = capsys.readouterr()
    assert code == 1
    row = next(line for line in output.out.splitlines() if line.startswith("tiny"))
    assert row.split() == ["tiny", "passed", "cell", "1", "[1]", "1/2"]
    assert "[1] tiny, book seed 1: cell 1: AssertionError: odd book seed 1" in output.out
    assert "[2/2]" in output.err
