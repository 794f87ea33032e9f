"""Keep the book's execution cache true to what the pages depend on (scripts/book.sh).

The book is built with Jupyter Book's ``execute_notebooks: cache`` (jupyter-cache, as
QuantEcon's lectures do): a chapter whose code cells are unchanged is not executed again,
its stored outputs are reused. jupyter-cache keys a chapter by its code alone, so it cannot
see the three other things a page depends on:

* the package's code (``moecl/**/*.py``), the stored results (``results/*``) and the book
  seed (``MOECL_BOOK_SEED``): every chapter may use them, so a change clears the whole cache;
* the data directory (``MOECL_DATA``, else ``~/.cache/moecl``, and which data sets it
  holds): only the chapters that read data use it (`data_chapters`), so a change removes
  exactly their cache records.

Before each build, `prepare` compares these fingerprints with the ones stored beside the
cache by the previous build, removes the stale records and touches the affected chapters'
sources, so that Sphinx reads them again (it re-reads only sources newer than its last
read) and myst-nb finds no cached outputs and executes them. Nothing else is re-executed.

    python scripts/book_cache.py prepare   # book.sh, before the build: prints what it invalidated
    python scripts/book_cache.py commit    # book.sh, after a successful build
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path("_build") / ".jupyter_cache"  # execute.cache in _config.yml
STATE = "moecl-fingerprint.json"
DATA_ENV = "MOECL_DATA"  # moecl.deep.datasets.DATA_ENV
SEED_ENV = "MOECL_BOOK_SEED"

# A chapter reads the data directory when its code calls a loader of moecl.deep.datasets
# or moecl.deep.streams (both resolve MOECL_DATA).
_READS_DATA = re.compile(r"\b(datasets|streams)\.[a-z_]+\(")


def chapters(root: Path = ROOT) -> list[Path]:
    """The book's executable chapters (MyST notebooks: jupytext front matter)."""
    found = []
    for path in sorted((root / "book").glob("*.md")):
        head = path.read_text(encoding="utf-8")[:2000]
        if head.startswith("---") and "jupytext:" in head and "kernelspec:" in head:
            found.append(path)
    return found


def data_chapters(root: Path = ROOT) -> list[Path]:
    """The chapters whose code reads the data directory."""
    return [path for path in chapters(root) if _READS_DATA.search(path.read_text(encoding="utf-8"))]


def _hash_files(digest, root: Path, paths) -> None:
    for path in sorted(paths):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())


def common_fingerprint(root: Path = ROOT, environ=None) -> str:
    """Hash of what every chapter may read: the package's code, results/, the book seed."""
    environ = os.environ if environ is None else environ
    digest = hashlib.sha256()
    _hash_files(digest, root, (root / "moecl").rglob("*.py"))
    _hash_files(digest, root, [p for p in (root / "results").glob("*") if p.name != "README.md"])
    digest.update(f"seed={environ.get(SEED_ENV, '')}".encode())
    return digest.hexdigest()


def data_directory(environ=None) -> Path:
    """The data directory the chapters resolve (moecl.deep.datasets.resolve_data_dir)."""
    environ = os.environ if environ is None else environ
    given = environ.get(DATA_ENV)
    return Path(given).expanduser() if given else Path.home() / ".cache" / "moecl"


def data_fingerprint(environ=None) -> str:
    """Hash of the data setting: whether MOECL_DATA is set, the folder, and what it holds
    (names and sizes two levels down: a data set downloaded or removed changes it)."""
    environ = os.environ if environ is None else environ
    folder = data_directory(environ)
    digest = hashlib.sha256(f"set={DATA_ENV in environ}|{folder.resolve() if folder.exists() else folder}".encode())
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            digest.update(b"\0" + entry.name.encode())
            if entry.is_dir():
                for inner in sorted(entry.iterdir()):
                    size = inner.stat().st_size if inner.is_file() else -1
                    digest.update(f"/{inner.name}:{size}".encode())
    return digest.hexdigest()


def fingerprints(root: Path = ROOT, environ=None) -> dict:
    return {"common": common_fingerprint(root, environ), "data": data_fingerprint(environ)}


def stale_chapters(old: dict | None, new: dict, root: Path = ROOT) -> list[Path]:
    """The chapters whose cached outputs no longer hold, given the last build's
    fingerprints ``old`` (None: no record, so the cache cannot be trusted) and ``new``."""
    if old is None or old.get("common") != new["common"]:
        return chapters(root)
    if old.get("data") != new["data"]:
        return data_chapters(root)
    return []


def invalidate(cache_dir: Path, stale: list[Path], everything: bool) -> int:
    """Remove the cache records of ``stale`` (all records when ``everything``); returns how many."""
    if not cache_dir.exists():
        return 0
    from jupyter_cache import get_cache

    cache = get_cache(str(cache_dir))
    if everything:
        count = len(cache.list_cache_records())
        cache.clear_cache()
        return count
    names = {path.resolve() for path in stale}
    removed = 0
    for record in cache.list_cache_records():
        if record.uri and Path(record.uri).resolve() in names:
            cache.remove_cache(record.pk)
            removed += 1
    return removed


def prepare(root: Path = ROOT, environ=None, cache_dir: Path | None = None) -> list[Path]:
    """Bring the cache in line before a build; returns the chapters that will execute again."""
    cache_dir = root / CACHE if cache_dir is None else cache_dir
    state = cache_dir / STATE
    old = json.loads(state.read_text()) if state.is_file() else None
    new = fingerprints(root, environ)
    stale = stale_chapters(old, new, root)
    everything = old is None or old.get("common") != new["common"]
    removed = invalidate(cache_dir, stale, everything)
    for path in stale:
        path.touch()  # Sphinx re-reads a source only when it is newer than its last read
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Recorded as the build's only once it succeeds (`commit`): after a failed build the
    # next one invalidates the same chapters again.
    (cache_dir / (STATE + ".pending")).write_text(json.dumps(new))
    if stale:
        why = "package, results or book seed changed" if everything else "data directory changed"
        print(f"book cache: {why}: {len(stale)} chapter(s) will execute ({removed} cache record(s) removed)",
              file=sys.stderr)
    return stale


def commit(root: Path = ROOT, cache_dir: Path | None = None) -> None:
    """After a successful build: its fingerprints become the ones the next build compares with."""
    cache_dir = root / CACHE if cache_dir is None else cache_dir
    pending = cache_dir / (STATE + ".pending")
    if pending.is_file():
        pending.replace(cache_dir / STATE)


if __name__ == "__main__":
    {"prepare": prepare, "commit": commit}[sys.argv[1] if len(sys.argv) > 1 else "prepare"]()
