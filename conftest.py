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
