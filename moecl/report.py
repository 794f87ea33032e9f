"""Chapter plumbing: stored results, means with standard errors, z-scores, gathered checks.

What several chapters of the book need, once, so that a chapter cell shows the
argument and not the bookkeeping:

* `results_folder`, `load_stored`: the stored full run of a named experiment
  (``results/<name>-<scale>-seed<S>.npz``), or ``None`` and one line saying how to
  create it (``python -m moecl run NAME --scale paper --out results``); `describe`
  is the one-line account of a stored run;
* `load_long_runs`: the stored long runs of ``deep-methods`` (``--scale long``), one
  per stream of `LONG_RUN_STREAMS`, whatever the file name says about their seeds,
  rounds and methods;
* `at`: ``(mean, se)`` of a stored summary at one round (or of a scalar summary);
* `z_diff`: the z-score of the difference of two independent means given as
  ``(mean, se)`` pairs; `difference`: the same from two samples of per-seed values;
  `paired`: mean, standard error and z of per-replicate (or per-pool) differences
  on common seeds; `t_interval`: the mean and the half-width of its 95% Student
  interval over a few seeds; `paired_verdict`: that interval for paired differences and
  the sign it settles (+1, -1, or 0 when it contains zero);
* `table`: rows shown as a rendered table (Markdown), not printed text;
* `data_source`: a data set's source named for the page, without the folder it was
  read from;
* `Checks`: the asserts of one section gathered in one cell, whose output is one
  summary line ("5 checks passed: ...") and which fails naming every false claim
  with its values.

The 95% band drawn from stored summaries or from replicates is `moecl.plotting.band`.
Everything here is numpy only (no matplotlib, no torch).
"""

from __future__ import annotations

import math
import os
import re
import textwrap
from pathlib import Path

import numpy as np

from .metrics import mean_se
from .results import load_results

#: Environment variable that points the book at another folder of stored results.
RESULTS_ENV = "MOECL_RESULTS"
#: Width at which `Checks.done` wraps its summary, so the output never overflows the column
#: (88 characters ran about 11 past it, measured by the browser check).
LINE_WIDTH = 72


# --------------------------------------------------------------------------- stored results


def results_folder() -> Path:
    """The repository's ``results/`` folder; ``$MOECL_RESULTS`` overrides it.

    Looks from the working directory upwards for a folder holding both ``results/``
    and ``moecl/`` (a checkout), else next to the installed package.
    """
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if (folder / "results").is_dir() and (folder / "moecl").is_dir():
            return folder / "results"
    return Path(__file__).resolve().parents[1] / "results"


def stored_name(name: str, scale: str = "paper", seed: int = 0) -> str:
    """File name of a stored run, as ``python -m moecl run`` writes it: ``<name>-<scale>-seed<S>.npz``."""
    return f"{name}-{scale}-seed{seed}.npz"


def create_command(name: str, scale: str = "paper", seed: int = 0) -> str:
    """The command that creates the stored run of experiment ``name``."""
    seed_part = "" if seed == 0 else f" --seed {seed}"
    return f"python -m moecl run {name} --scale {scale}{seed_part} --out results"


def load_stored(name: str, scale: str = "paper", seed: int = 0, folder=None, quiet: bool = False):
    """``(header, arrays)`` of the stored run of experiment ``name``, or None when there is none.

    When the file is missing, prints one line (unless ``quiet``)::

        No stored paper-scale run of NAME; create it with: python -m moecl run NAME --scale paper --out results

    The line names no filesystem path (the page must not show the builder's folders).
    A file that exists but is not a valid results file raises
    `moecl.results.ResultsFileError`.
    """
    path = Path(folder if folder is not None else results_folder()) / stored_name(name, scale, seed)
    if not path.is_file():
        if not quiet:
            print(f"No stored {scale}-scale run of {name}; create it with: {create_command(name, scale, seed)}")
        return None
    return load_results(path)


#: The streams of the stored long ``deep-methods`` runs, with their names on the page.
LONG_RUN_STREAMS = {"digits-1v": "one-vs-rest digits", "cifar10": "split CIFAR-10"}


def load_long_runs(streams=tuple(LONG_RUN_STREAMS), folder=None) -> dict:
    """``{stream: (header, arrays)}`` of the stored long ``deep-methods`` runs of book seed 0.

    A stream's file is ``deep-methods-long-seed0[-...]-stream=<stream>[-...].npz`` (the
    command line names a run by what differs from the preset); of several, the last in
    sorted order is read. Streams without a file are left out.
    """
    folder = Path(folder if folder is not None else results_folder())
    found = {}
    for stream in streams:
        paths = sorted(path for path in folder.glob(f"deep-methods-long-seed0*stream={stream}*.npz")
                       if re.search(rf"-stream={re.escape(stream)}(-|\.npz$)", path.name))
        if paths:
            found[stream] = load_results(paths[-1])
    return found


def describe(stored) -> str:
    """One line on a stored run: experiment, scale, R, T, seed, wall time, package version, date."""
    header = stored[0] if isinstance(stored, tuple) else stored
    parts = [f"{header.get('experiment', '?')} ({header.get('scale', '?')} scale)"]
    if "replicates" in header:
        parts.append(f"R = {header['replicates']}")
    if "rounds" in header:
        parts.append(f"T = {header['rounds']}")
    if "seed" in header:
        parts.append(f"seed {header['seed']}")
    if "wall_time" in header:
        parts.append(f"{float(header['wall_time']):.0f} s")
    if "moecl_version" in header:
        parts.append(f"moecl {header['moecl_version']}")
    if "created" in header:
        parts.append(f"created {str(header['created'])[:10]}")
    return ", ".join(parts)


# --------------------------------------------------------------------------- data sources

#: A filesystem path inside a data set's source text (POSIX, home or Windows drive).
_SOURCE_PATH = re.compile(r"(?<![\w.])(?:~|[A-Za-z]:[\\/]|/(?=[^\s,;()]))[^\s,;()]*")


def data_source(source: str) -> str:
    """A data set's ``source`` (`moecl.deep.datasets.ImageDataset.source`) named for the page, without paths.

    ``"MNIST from /data/mnist"`` becomes ``"MNIST (official files)"``; a parenthesis that
    followed the folder joins it (``"CIFAR-10 (official files; 1 of 5 training batches:
    data_batch_1)"``); any other path becomes "the data directory" (``"... (fallback:
    MNIST not found in the data directory)"``). The book shows where its data came from
    by name, never by the builder's folders.
    """
    text = re.sub(r"\s+from\s+" + _SOURCE_PATH.pattern + r"(?:\s+\(([^()]*)\))?",
                  lambda match: f" (official files{'; ' + match.group(1) if match.group(1) else ''})", str(source))
    return _SOURCE_PATH.sub("the data directory", text)


# --------------------------------------------------------------------------- numbers


def at(arrays, key: str, index: int = -1) -> tuple[float, float]:
    """``(mean, se)`` of the stored summary ``key`` (arrays ``key/mean``, ``key/se``).

    At position ``index`` (default: the last round) of a per-round summary, or the
    value itself of a scalar one. ``arrays`` is the second item of a stored run, or
    any mapping with those keys.
    """
    try:
        mean, se = np.asarray(arrays[f"{key}/mean"]), np.asarray(arrays[f"{key}/se"])
    except KeyError:
        known = sorted({name.rsplit("/", 1)[0] for name in arrays if name.endswith("/mean")})
        raise KeyError(f"no summary {key!r}; stored summaries: {known}") from None
    if mean.ndim == 0:
        return float(mean), float(se)
    return float(mean[index]), float(se[index])


def z_diff(a: tuple[float, float], b: tuple[float, float]) -> float:
    """z-score of ``a - b`` for two independent means given as ``(mean, se)`` pairs.

    ``(a_mean - b_mean) / sqrt(a_se**2 + b_se**2)``. Under common random numbers (the
    same seeds in both) this overstates the standard error: the z-score is conservative.
    """
    se = math.hypot(float(a[1]), float(b[1]))
    if not se > 0:
        raise ValueError(f"the standard errors {a[1]!r} and {b[1]!r} give no positive standard error")
    return (float(a[0]) - float(b[0])) / se


def difference(a, b, axis: int = 0) -> tuple[float, float]:
    """``(mean(a) - mean(b), z)`` for two independent samples (e.g. per-seed values).

    Each mean's standard error comes from its own sample's spread (`mean_se`); z is
    `z_diff` of the two. NaN entries are ignored.
    """
    ma, sa = mean_se(np.asarray(a, dtype=float), axis=axis)
    mb, sb = mean_se(np.asarray(b, dtype=float), axis=axis)
    return float(ma - mb), z_diff((float(ma), float(sa)), (float(mb), float(sb)))


def t_interval(values, axis: int = 0) -> tuple:
    """Mean of ``values`` over ``axis`` (e.g. seeds) and the half-width of its 95% Student-t
    interval, ``t_{0.975, n-1} * sd / sqrt(n)``: the right width for a handful of seeds,
    where 1.96 standard errors would be too narrow."""
    from scipy import stats

    values = np.asarray(values, dtype=float)
    n = values.shape[axis]
    if n < 2:
        raise ValueError(f"a t-interval needs at least 2 values along axis {axis}, got {n}")
    half = stats.t.ppf(0.975, n - 1) * values.std(axis=axis, ddof=1) / math.sqrt(n)
    return values.mean(axis=axis), half


def paired_verdict(a, b) -> tuple[float, float, int]:
    """``(mean, half, sign)`` of the per-seed differences ``a - b`` (same seeds, same order):
    their mean, the half-width of its 95% t-interval (`t_interval`), and the sign the
    interval settles: +1 above zero, -1 below, 0 when it contains zero (not settled)."""
    mean, half = t_interval(np.asarray(a, dtype=float) - np.asarray(b, dtype=float))
    mean, half = float(mean), float(half)
    return mean, half, 0 if abs(mean) <= half else (1 if mean > 0 else -1)


def paired(a, b, axis: int = 0) -> tuple[float, float, float]:
    """``(mean, se, z)`` of the paired differences ``a - b`` (same seeds, same order).

    The standard error is that of the per-replicate (or per-pool) differences, which
    is smaller than the unpaired one when the two settings share their randomness.
    """
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    mean, se = mean_se(diff, axis=axis)
    mean, se = float(mean), float(se)
    if not se > 0:
        raise ValueError("the paired differences have no spread: a standard error of 0 gives no z-score")
    return mean, se, mean / se


# --------------------------------------------------------------------------- tables


class Table:
    """Rows shown as a rendered table in the book: a Markdown table (``_repr_markdown_``).

    ``rows`` is a list of dicts (keys: the columns, in the order of ``columns`` or of
    the first row) or a list of sequences with ``columns`` given. ``formats`` maps a
    column to a format string (``"{:.3f}"``) or a function; other floats show 4
    significant digits. A cell's ``|`` is escaped. Display it as a cell's last value,
    or `glue` it and place it with the ``glue`` directive. The book renders Markdown
    outputs as MyST (``nb_render_markdown_format: myst`` in _config.yml), so cells may
    hold math (``$F_T$``).
    """

    def __init__(self, rows, columns=None, formats=None):
        rows = list(rows)
        if not rows:
            raise ValueError("a table needs at least one row")
        if isinstance(rows[0], dict):
            columns = list(columns or rows[0])
            self.cells = [[row.get(column, "") for column in columns] for row in rows]
        else:
            if columns is None:
                raise ValueError("rows given as sequences need their columns")
            columns = list(columns)
            self.cells = [list(row) for row in rows]
            if any(len(row) != len(columns) for row in self.cells):
                raise ValueError(f"every row needs {len(columns)} cells")
        self.columns = columns
        self.formats = dict(formats or {})

    def _format(self, column, value) -> str:
        rule = self.formats.get(column)
        if callable(rule):
            text = rule(value)
        elif rule is not None:
            text = rule.format(value)
        elif isinstance(value, (float, np.floating)):
            text = f"{float(value):.4g}"
        else:
            text = str(value)
        return str(text).replace("|", "\\|").replace("\n", " ")

    def _repr_markdown_(self) -> str:
        def numeric(k):
            return all(isinstance(row[k], (int, float, np.integer, np.floating)) and not isinstance(row[k], bool)
                       for row in self.cells)

        header = "| " + " | ".join(str(c).replace("|", "\\|") for c in self.columns) + " |"
        rule = "|" + "|".join("---:" if numeric(k) else ":---" for k in range(len(self.columns))) + "|"
        body = ["| " + " | ".join(self._format(c, v) for c, v in zip(self.columns, row)) + " |" for row in self.cells]
        return "\n".join([header, rule, *body])

    def __str__(self) -> str:
        return self._repr_markdown_()


def table(rows, columns=None, formats=None) -> Table:
    """A `Table` of ``rows`` (see there): the book's way to show a table of results."""
    return Table(rows, columns, formats)


# --------------------------------------------------------------------------- checks


def _format_value(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.4g}"
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, (float, np.floating, int)) for v in value):
        return f"{float(value[0]):.4g} ± {float(value[1]):.2g}"
    array = np.asarray(value) if isinstance(value, (list, np.ndarray)) else None
    if array is not None and array.dtype.kind in "fiub":
        if array.size > 8:
            return f"array{array.shape} in [{np.nanmin(array):.4g}, {np.nanmax(array):.4g}]"
        return np.array2string(array, precision=4, separator=", ")
    return repr(value)


class Checks:
    """The checks of one section, gathered: one summary line when all hold, one error naming those that fail.

    ::

        checks = report.Checks("termination")
        checks.that(z > 3, "termination lowers forgetting at T", z=z)
        checks.that(purity > random, "routing beats random routing", purity=purity, random=random)
        checks.done()   # prints "termination: 2 checks passed: termination lowers ...; routing beats ..."

    ``that`` records a claim and never raises, so every claim of the section is
    evaluated; `done` raises `AssertionError` listing each false claim with its
    values. A condition may be an array: the claim holds when every element is true.
    As a context manager, `done` runs on leaving the block (unless it raised).
    """

    def __init__(self, section: str, width: int = LINE_WIDTH):
        self.section = section
        #: Width at which `summary` wraps (a narrower one for a page whose column is narrower).
        self.width = int(width)
        self.claims: list[tuple[str, bool, dict]] = []

    def that(self, condition, claim: str, value=None, **values) -> bool:
        """Record ``claim`` with its truth ``condition`` and the values it rests on; returns the truth."""
        if value is not None:
            values = {"value": value, **values}
        array = np.asarray(condition)
        if array.dtype.kind not in "bifu":
            raise TypeError(f"check {claim!r}: the condition must be a boolean (or numeric) value, got {condition!r}")
        if array.size == 0:
            raise ValueError(f"check {claim!r}: the condition is an empty array")
        holds = bool(np.all(array))
        self.claims.append((claim, holds, values))
        return holds

    @property
    def failed(self) -> list[str]:
        return [claim for claim, holds, _ in self.claims if not holds]

    def summary(self) -> str:
        """The line `done` prints: the section, how many checks passed, and the claims."""
        n = len(self.claims)
        claims = "; ".join(claim for claim, _, _ in self.claims)
        text = f"{self.section}: {n} check{'s' if n != 1 else ''} passed: {claims}"
        return textwrap.fill(text, width=self.width, subsequent_indent="  ")

    def done(self) -> None:
        """Print the summary when every claim holds; otherwise raise AssertionError naming the false ones.

        Returns None, so that ``checks.done()`` as a cell's last line displays nothing more.
        """
        if not self.claims:
            raise AssertionError(f"{self.section}: no checks were made")
        failed = [(claim, values) for claim, holds, values in self.claims if not holds]
        if failed:
            lines = [f"{self.section}: {len(failed)} of {len(self.claims)} checks failed:"]
            for claim, values in failed:
                shown = ", ".join(f"{name} = {_format_value(v)}" for name, v in values.items())
                lines.append(f"  - {claim}" + (f" ({shown})" if shown else ""))
            raise AssertionError("\n".join(lines))
        print(self.summary())

    def __enter__(self) -> "Checks":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.done()
