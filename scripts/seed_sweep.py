#!/usr/bin/env python3
"""Run chapters of the book under several book seeds and tabulate which pass.

Every live seed of a chapter is ``moecl.book_seed(k)``, derived from the environment
variable ``MOECL_BOOK_SEED``; a chapter run under another book seed is an independent
repetition of its experiments. This script runs each chosen chapter under nbval once
per book seed (and per data setting), in parallel, and prints a table: chapter x seed
-> ``passed`` or the first failing cell, with that cell's assertion message below the
table. It exits 1 when any run fails. It is not part of CI (CI runs book seed 0).

    .venv/bin/python scripts/seed_sweep.py drift strategies             # book seeds 0-19, the default
    .venv/bin/python scripts/seed_sweep.py deep seed --seeds 0-9
    .venv/bin/python scripts/seed_sweep.py --seeds 0-4 --data ../shared/data --no-data --markdown

Chapters are names (``drift``) or paths (``book/drift.md``); by default every chapter of
``_toc.yml`` that is a notebook. ``--data DIR`` runs with ``MOECL_DATA=DIR``, ``--no-data``
with ``MOECL_DATA`` unset; give both for one table per data setting, neither to inherit
the environment. The rules the chapters' checks follow are in ``book/choices.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK_SEED_ENV = "MOECL_BOOK_SEED"
DATA_ENV = "MOECL_DATA"
PASSED = "passed"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_FAILED_CELL = re.compile(r"^FAILED \S*::Cell (\d+)", re.MULTILINE)
_CELL_HEADER = re.compile(r"^_+ \S*::Cell (\d+) _+\s*$", re.MULTILINE)
_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit))\b(:.*)?$")
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# --------------------------------------------------------------------------- arguments


def parse_seeds(text: str) -> list[int]:
    """Book seeds from ``"0-9"``, ``"0,3,5"`` or a mix (``"0-2,7"``), sorted, without repeats."""
    seeds: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise ValueError(f"seeds: {part!r} is neither a seed nor a range a-b")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ValueError(f"seeds: empty range {part!r}")
        seeds.update(range(low, high + 1))
    if not seeds:
        raise ValueError("seeds: none given")
    return sorted(seeds)


def _is_notebook(path: Path) -> bool:
    """A jupytext MyST notebook: what the repository's conftest.py hands to nbval."""
    if path.suffix != ".md" or not path.is_file():
        return False
    head = path.read_text(encoding="utf-8")[:2000]
    return head.startswith("---") and "jupytext:" in head and "kernelspec:" in head


def toc_chapters(root: Path = ROOT) -> list[Path]:
    """The notebooks among the files of ``_toc.yml``, in the book's order."""
    text = (root / "_toc.yml").read_text(encoding="utf-8")
    names = re.findall(r"^\s*(?:-\s*)?(?:root|file):\s*(\S+)\s*$", text, re.MULTILINE)
    paths = [root / (name if name.endswith(".md") else f"{name}.md") for name in names]
    return [path for path in paths if _is_notebook(path)]


def resolve_chapter(name: str, root: Path = ROOT) -> Path:
    """``drift``, ``drift.md``, ``book/drift.md`` or any path -> the chapter's file."""
    candidates = [Path(name), root / name, root / "book" / name, root / "book" / f"{name}.md"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise ValueError(f"no chapter {name!r} (looked for {', '.join(str(c) for c in candidates)})")


@dataclass(frozen=True)
class DataSetting:
    """One data setting: ``MOECL_DATA`` set to ``directory``, unset (``None``), or inherited."""

    label: str
    directory: str | None
    inherit: bool = False

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        if self.inherit:
            return env
        env.pop(DATA_ENV, None)
        if self.directory is not None:
            env[DATA_ENV] = self.directory
        return env


def data_settings(data: str | None, no_data: bool, environ: dict[str, str] | None = None) -> list[DataSetting]:
    """The data settings of one sweep: ``--data`` and/or ``--no-data``, or the environment's."""
    environ = os.environ if environ is None else environ
    settings = []
    if data is not None:
        directory = str(Path(data).resolve())
        if not Path(directory).is_dir():
            raise ValueError(f"--data {data}: not a directory")
        settings.append(DataSetting(f"with data ({DATA_ENV}={directory})", directory))
    if no_data:
        settings.append(DataSetting(f"without data ({DATA_ENV} unset)", None))
    if not settings:
        inherited = environ.get(DATA_ENV)
        label = f"with data ({DATA_ENV}={inherited})" if inherited else f"without data ({DATA_ENV} unset)"
        settings.append(DataSetting(label, inherited, inherit=True))
    return settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seed_sweep.py",
        description="Run chapters under nbval for several book seeds (MOECL_BOOK_SEED) and tabulate the results.",
    )
    parser.add_argument("chapters", nargs="*", help="chapter names or paths (default: every notebook in _toc.yml)")
    parser.add_argument("--seeds", default="0-19", help="book seeds: '0-19', '0,3,5' or '0-2,7' (default 0-19, the "
                        "twenty seeds a linear chapter's verdict rests on; the deep chapters are swept over 0-9)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at once (default: the cores)")
    parser.add_argument("--data", metavar="DIR", help=f"run with {DATA_ENV}=DIR")
    parser.add_argument("--no-data", action="store_true", help=f"run with {DATA_ENV} unset (with --data: both)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds one run may take (default: no limit)")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown (for docs/evidence.md)")
    parser.add_argument("--python", default=None, help="the Python that runs pytest (default: .venv/bin/python)")
    return parser


# --------------------------------------------------------------------------- one run


@dataclass
class Outcome:
    """The result of one chapter under one book seed and data setting."""

    chapter: str
    seed: int
    setting: str
    passed: bool
    cell: int | None = None
    message: str = ""
    others: int = 0
    seconds: float = 0.0

    @property
    def short(self) -> str:
        if self.passed:
            return PASSED
        return f"cell {self.cell}" if self.cell is not None else "failed"

    @property
    def detail(self) -> str:
        more = f" (and {self.others} later cell{'s' if self.others > 1 else ''})" if self.others else ""
        return f"{self.short}: {self.message}{more}" if self.message else f"{self.short}{more}"


def parse_failure(output: str) -> tuple[int | None, str, int]:
    """From pytest/nbval output: the first failing cell, its assertion message, and how many more failed.

    The message is the last ``AssertionError`` line of that cell's report (else its last
    exception line, else the last line of the output).
    """
    text = _ANSI.sub("", output)
    cells = [int(number) for number in _FAILED_CELL.findall(text)]
    headers = list(_CELL_HEADER.finditer(text))
    if not cells:
        cells = [int(match.group(1)) for match in headers]
    first = min(cells) if cells else None
    section = text
    if first is not None:
        for index, match in enumerate(headers):
            if int(match.group(1)) == first:
                end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
                summary = text.find("short test summary info", match.end(), end)
                section = text[match.end(): summary if summary >= 0 else end]
                break
    lines = [line.rstrip() for line in section.splitlines()]
    asserts = [line.strip() for line in lines
               if line.strip().startswith("AssertionError") and "Traceback (most recent call last)" not in line]
    exceptions = [line.strip() for line in lines if _EXCEPTION_LINE.match(line)]
    if asserts:
        message = asserts[-1]
    elif exceptions:
        message = exceptions[-1]
    else:
        rest = [line.strip() for line in text.splitlines() if line.strip()]
        message = rest[-1] if rest else "no output"
    others = len(set(cells)) - 1 if cells else 0
    return first, message, others


def pytest_command(python: str, chapter: Path) -> list[str]:
    return [python, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q", "-p", "no:cacheprovider",
            str(chapter)]


def run_one(chapter: Path, seed: int, setting: DataSetting, python: str, threads: int | None,
            timeout: float | None) -> Outcome:
    env = setting.environment(dict(os.environ))
    env[BOOK_SEED_ENV] = str(seed)
    if threads is not None:
        for variable in _THREAD_VARIABLES:
            env.setdefault(variable, str(threads))
    started = time.perf_counter()
    try:
        process = subprocess.run(pytest_command(python, chapter), cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return Outcome(chapter.stem, seed, setting.label, False, None, f"timed out after {timeout:g} s",
                       seconds=time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if process.returncode == 0:
        return Outcome(chapter.stem, seed, setting.label, True, seconds=seconds)
    if process.returncode == 5:
        return Outcome(chapter.stem, seed, setting.label, False, None, "pytest collected no cells", seconds=seconds)
    cell, message, others = parse_failure(process.stdout + "\n" + process.stderr)
    return Outcome(chapter.stem, seed, setting.label, False, cell, message, others, seconds)


# --------------------------------------------------------------------------- tables


@dataclass
class Table:
    """Outcomes of one data setting: chapters as rows, seeds as columns."""

    setting: str
    chapters: list[str]
    seeds: list[int]
    cells: dict[tuple[str, int], Outcome] = field(default_factory=dict)
    stamp: str = ""

    def failures(self) -> list[Outcome]:
        return [self.cells[c, s] for c in self.chapters for s in self.seeds
                if (c, s) in self.cells and not self.cells[c, s].passed]

    def _grid(self) -> list[list[str]]:
        notes = {id(outcome): index for index, outcome in enumerate(self.failures(), start=1)}
        rows = []
        for chapter in self.chapters:
            row = [chapter]
            for seed in self.seeds:
                outcome = self.cells.get((chapter, seed))
                if outcome is None:
                    row.append("-")
                elif outcome.passed:
                    row.append(PASSED)
                else:
                    row.append(f"{outcome.short} [{notes[id(outcome)]}]")
            passed = sum(1 for seed in self.seeds if (chapter, seed) in self.cells and self.cells[chapter, seed].passed)
            row.append(f"{passed}/{len(self.seeds)}")
            rows.append(row)
        return rows

    def _header(self) -> list[str]:
        return ["chapter", *[str(seed) for seed in self.seeds], "passed"]

    def _notes(self) -> list[str]:
        return [f"[{index}] {outcome.chapter}, book seed {outcome.seed}: {outcome.detail}"
                for index, outcome in enumerate(self.failures(), start=1)]

    def text(self) -> str:
        rows = [self._header(), *self._grid()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [self.setting]
        for index, row in enumerate(rows):
            lines.append("  ".join(value.ljust(width) for value, width in zip(row, widths)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines.extend(self._notes())
        return "\n".join(lines)

    def markdown(self) -> str:
        """The table in Markdown; each row ends with the sweep's date and commit, so rows of
        several sweeps can share one table (docs/evidence.md)."""
        header = [*self._header(), "swept"]
        header[1:-2] = [f"seed {seed}" for seed in self.seeds]
        lines = [f"### {self.setting[:1].upper()}{self.setting[1:]}", "",
                 "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + [":-:"] * (len(header) - 2) + ["---"]) + "|"]
        for row in self._grid():
            lines.append("| " + " | ".join([f"`{row[0]}`", *row[1:], self.stamp]) + " |")
        notes = self._notes()
        if notes:
            lines.append("")
            lines.extend(f"- {note}" for note in notes)
        return "\n".join(lines)


def provenance(root: Path = ROOT) -> str:
    """When and on which commit a sweep ran."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        commit += " (with uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return f"{now}, commit {commit}"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
        settings = data_settings(args.data, args.no_data)
        chapters = [resolve_chapter(name) for name in args.chapters] if args.chapters else toc_chapters()
    except ValueError as error:
        parser.error(str(error))
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    python = args.python or str(ROOT / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.jobs) if args.jobs > 1 else None

    names = [chapter.stem for chapter in chapters]
    tables = {setting.label: Table(setting.label, names, seeds) for setting in settings}
    runs = [(chapter, seed, setting) for setting in settings for chapter in chapters for seed in seeds]
    print(f"seed sweep: {len(chapters)} chapter(s) x {len(seeds)} seed(s) x {len(settings)} data setting(s) "
          f"= {len(runs)} runs, {args.jobs} at a time", file=sys.stderr, flush=True)
    stamp = provenance()  # when the sweep started, and on which commit
    lock, done = threading.Lock(), 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, chapter, seed, setting, python, threads, args.timeout)
                   for chapter, seed, setting in runs]
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            with lock:
                done += 1
                tables[outcome.setting].cells[outcome.chapter, outcome.seed] = outcome
                print(f"[{done}/{len(runs)}] {outcome.chapter}, book seed {outcome.seed}, {outcome.setting}: "
                      f"{outcome.detail} ({outcome.seconds:.0f} s)", file=sys.stderr, flush=True)

    for table in tables.values():
        table.stamp = stamp
    if args.markdown:
        print(f"Sweep of {stamp}: `scripts/seed_sweep.py {shlex.join(argv)}`. A failing run names its first "
              "failing code cell (nbval's numbering, from 0) and that cell's assertion message.\n")
        print("\n\n".join(table.markdown() for table in tables.values()))
    else:
        print(f"seed sweep, {stamp}\n")
        print("\n\n".join(table.text() for table in tables.values()))
    return 1 if any(table.failures() for table in tables.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
