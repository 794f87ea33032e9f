"""Let ``pytest --nbval`` / ``--nbval-lax`` run the book's jupytext chapters directly.

nbval collects only ``.ipynb`` files. The chapters are MyST markdown notebooks
(``book/*.md`` with a ``jupytext``/``kernelspec`` front matter); here they are
collected as nbval notebooks, read with ``jupytext.read``. nbval starts each
kernel in the notebook's own directory, so chapters run with ``book/`` as cwd.
"""

from __future__ import annotations

from pathlib import Path


def _is_jupytext_notebook(path: Path) -> bool:
    if path.suffix != ".md":
        return False
    with path.open(encoding="utf-8") as handle:
        head = handle.read(2000)
    return head.startswith("---") and "jupytext:" in head and "kernelspec:" in head


class _NotebookReader:
    """Stands in for the ``nbformat`` module inside nbval: reads .md via jupytext."""

    def __init__(self, nbformat_module):
        self._nbformat = nbformat_module

    def read(self, path, as_version=4):
        if str(path).endswith(".md"):
            import jupytext

            return jupytext.read(path)
        return self._nbformat.read(path, as_version=as_version)

    def __getattr__(self, name):
        return getattr(self._nbformat, name)


def pytest_configure(config):
    try:
        import nbval.plugin
    except ImportError:
        return
    if not isinstance(nbval.plugin.nbformat, _NotebookReader):
        nbval.plugin.nbformat = _NotebookReader(nbval.plugin.nbformat)


def pytest_collect_file(file_path: Path, parent):
    option = parent.config.option
    if not (getattr(option, "nbval", False) or getattr(option, "nbval_lax", False)):
        return None
    if _is_jupytext_notebook(file_path):
        from nbval.plugin import IPyNbFile

        return IPyNbFile.from_parent(parent, path=file_path)
    return None


# --------------------------------------------------------------------------- executed chapters
#
# The whole-book browser check (tests/test_browser.py) needs the chapters executed,
# with their figures. nbval executes every chapter anyway; rather than execute the
# book a second time, the outputs nbval collects are written as executed notebooks
# (``$MOECL_EXECUTED_NOTEBOOKS/<path>.ipynb``, a session temporary folder unless set),
# and the browser test builds the book from them with execution off. A notebook is
# written only once every one of its code cells has run and passed; the browser
# test falls back to executing the book itself when one is missing.

EXECUTED_ENV = "MOECL_EXECUTED_NOTEBOOKS"
_executed_dir: Path | None = None
_failed_notebooks: set = set()


def pytest_sessionstart(session):
    global _executed_dir
    import os
    import tempfile

    option = session.config.option
    if not (getattr(option, "nbval", False) or getattr(option, "nbval_lax", False)):
        return
    if not os.environ.get(EXECUTED_ENV):
        os.environ[EXECUTED_ENV] = tempfile.mkdtemp(prefix="moecl-executed-")
        session.config._moecl_temporary_executed = os.environ[EXECUTED_ENV]
    _executed_dir = Path(os.environ[EXECUTED_ENV])


def pytest_sessionfinish(session):
    """Remove the executed notebooks' folder when this session made it."""
    import shutil

    temporary = getattr(session.config, "_moecl_temporary_executed", None)
    if temporary:
        shutil.rmtree(temporary, ignore_errors=True)


#: Tests that build or check the whole book (marked ``slow`` beside every chapter's cells).
SLOW_TESTS = ("test_whole_book_in_chromium",)


def pytest_collection_modifyitems(session, config, items):
    """Mark the chapters' cells and the whole-book checks ``slow`` (``pytest -m "not slow"`` is the unit
    run), and run the whole-book browser check last, after nbval has executed every chapter."""
    import pytest

    for item in items:
        if item.path.suffix == ".md" or item.name in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
    last = [item for item in items if item.name == "test_whole_book_in_chromium"]
    items[:] = [item for item in items if item not in last] + last


def pytest_runtest_logreport(report):
    if _executed_dir is None or report.when != "call":
        return
    item = _CELLS.get(report.nodeid)
    if item is None:
        return
    notebook = item.parent
    if not report.passed:
        _failed_notebooks.add(notebook.nodeid)
        return
    item.cell["outputs"] = list(item.test_outputs or [])
    item.cell["execution_count"] = item.cell_num if hasattr(item, "cell_num") else None
    code_cells = [c for c in notebook.nb.cells if c.cell_type == "code"]
    if notebook.nodeid in _failed_notebooks or item.cell is not code_cells[-1]:
        return
    import nbformat

    target = _executed_dir / Path(notebook.path).relative_to(notebook.config.rootpath).with_suffix(".ipynb")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_suffix(".ipynb.tmp")
    nbformat.write(notebook.nb, str(temporary))
    temporary.replace(target)


_CELLS: dict = {}


def pytest_itemcollected(item):
    if type(item).__name__ == "IPyNbCell":
        _CELLS[item.nodeid] = item
