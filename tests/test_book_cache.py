"""scripts/book_cache.py: the execution cache follows what the pages depend on.

A small fake book (three chapters, one of which reads the data directory) and a real
jupyter-cache with one record per chapter: changing the data setting removes exactly the
data chapter's record, changing the package's code or the stored results removes all,
and nothing changed removes none. The book itself is not built here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("book_cache", ROOT / "scripts" / "book_cache.py")
book_cache = importlib.util.module_from_spec(_spec)
sys.modules["book_cache"] = book_cache
_spec.loader.exec_module(book_cache)

FRONT = "---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n  name: python3\n---\n"


def _fake_book(root: Path) -> None:
    (root / "book").mkdir()
    (root / "book" / "gate.md").write_text(FRONT + "```{code-cell}\nimport moecl\nmoecl.gate\n```\n")
    (root / "book" / "deep.md").write_text(
        FRONT + "```{code-cell}\nfrom moecl.deep import datasets\nd = datasets.load_mnist()\n```\n")
    (root / "book" / "sharing.md").write_text(FRONT + "```{code-cell}\nx = 1\n```\n")
    (root / "book" / "notation.md").write_text("# Notation\n\nNo code.\n")  # not a notebook
    (root / "moecl").mkdir()
    (root / "moecl" / "gate.py").write_text("A = 1\n")
    (root / "results").mkdir()
    (root / "results" / "run.npz").write_bytes(b"1")


def _cache_every_chapter(cache_dir: Path, root: Path) -> None:
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(cache_dir))
    held = {record.uri for record in cache.list_cache_records()}
    for number, path in enumerate(book_cache.chapters(root)):
        if str(path) in held:  # myst-nb reuses the record: no execution
            continue
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"x = {number}", execution_count=1)])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        cache.cache_notebook_bundle(CacheBundleIn(notebook, str(path)), check_validity=False)


def _cached(cache_dir: Path) -> set[str]:
    from jupyter_cache import get_cache

    return {Path(record.uri).stem for record in get_cache(str(cache_dir)).list_cache_records()}


def _build(root: Path, environ: dict) -> set[str]:
    """What book.sh does around a build: prepare, (build: cache every chapter), commit."""
    stale = book_cache.prepare(root, environ)
    _cache_every_chapter(root / book_cache.CACHE, root)
    book_cache.commit(root)
    return {path.stem for path in stale}


def test_the_data_chapters_of_the_real_book():
    assert [path.stem for path in book_cache.data_chapters()] == ["deep", "deep_paper", "seed"]
    assert len(book_cache.chapters()) >= 15


def test_a_rebuild_re_executes_exactly_what_changed(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    _fake_book(root)
    data = tmp_path / "data"
    (data / "MNIST").mkdir(parents=True)
    (data / "MNIST" / "train.gz").write_bytes(b"123")
    without = {"HOME": str(tmp_path / "home")}
    with_data = {**without, "MOECL_DATA": str(data)}
    cache_dir = root / book_cache.CACHE

    assert _build(root, without) == {"gate", "deep", "sharing"}  # first build: everything
    assert _cached(cache_dir) == {"gate", "deep", "sharing"}
    assert book_cache.prepare(root, without) == []  # unchanged: nothing re-executes
    assert _cached(cache_dir) == {"gate", "deep", "sharing"}

    # Setting MOECL_DATA: exactly the chapter that reads data loses its record.
    before = (root / "book" / "gate.md").stat().st_mtime_ns
    assert {p.stem for p in book_cache.prepare(root, with_data)} == {"deep"}
    assert _cached(cache_dir) == {"gate", "sharing"}
    assert (root / "book" / "gate.md").stat().st_mtime_ns == before  # Sphinx will not re-read it
    _cache_every_chapter(cache_dir, root)
    book_cache.commit(root)
    assert book_cache.prepare(root, with_data) == []
    book_cache.commit(root)

    # A data set added to the same folder counts as a change of the data setting.
    (data / "cifar-10-batches-py").mkdir()
    assert {p.stem for p in book_cache.prepare(root, with_data)} == {"deep"}
    _cache_every_chapter(cache_dir, root)
    book_cache.commit(root)

    # The package's code or the stored results: every chapter.
    (root / "moecl" / "gate.py").write_text("A = 2\n")
    assert _build(root, with_data) == {"gate", "deep", "sharing"}
    (root / "results" / "run.npz").write_bytes(b"2")
    assert _build(root, with_data) == {"gate", "deep", "sharing"}
    assert _build(root, {**with_data, "MOECL_BOOK_SEED": "3"}) == {"gate", "deep", "sharing"}
    assert _build(root, {**with_data, "MOECL_BOOK_SEED": "3"}) == set()


def test_a_failed_build_invalidates_again(tmp_path):
    root = tmp_path / "repo"
    root.mkdir()
    _fake_book(root)
    environ = {"HOME": str(tmp_path / "home")}
    _build(root, environ)
    changed = {**environ, "MOECL_DATA": str(tmp_path)}
    assert [p.stem for p in book_cache.prepare(root, changed)] == ["deep"]
    # The build fails (no commit): the next build re-executes the data chapter again.
    assert [p.stem for p in book_cache.prepare(root, changed)] == ["deep"]


def test_the_book_is_configured_for_the_cache():
    import yaml

    execute = yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]
    assert execute["execute_notebooks"] == "cache"
    assert Path(execute["cache"]) == book_cache.CACHE
    script = (ROOT / "scripts" / "book.sh").read_text()
    assert script.index("book_cache.py prepare") < script.index("jupyter-book build") < script.index("book_cache.py commit")
