"""Command line: run the book's named experiments and save their results.

    python -m moecl list
    python -m moecl run NAME [--scale ci|paper] [--seed S] [--replicates R] [--out DIR]
                             [--set FIELD=VALUE ...] [--device auto|cpu|cuda] [--no-progress]

``run`` simulates the experiment (`moecl.experiments`) and writes one results file
``DIR/<name>-<scale>-seed<S>[-R<R>][-FIELD=VALUE...][-data=<source>].npz``
(`moecl.results`), then prints its path on stdout. The name says everything that
differs from the experiment's preset: replicates other than the preset's, every
override, and a fallback data source; so a small run never takes the name of a
stored full-size one. A results file that exists with a header that differs (another
run) is not written over without ``--force``.

Exit status: 0 on success; 2 for errors in the arguments (unknown experiment or
scale, negative seed, fewer than two replicates, a value the configuration rejects,
an override of a field the experiment owns, a run that needs more memory than the
machine has), each in one line on stderr before anything runs; 1 for data or files
that cannot be read or written (``cannot read the data: ...``, an unwritable or
mistyped ``--out``, ``MOECL_DATA`` missing or empty, an existing results file of
another run without ``--force``, results that came out non-finite), also in one line;
130 when interrupted (Ctrl-C). Nothing is written unless the run succeeds.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import sys
import tempfile
import textwrap

import numpy as np

from . import __version__, sweep
from .errors import ClusterError, DataError, ResultsFileError, SweepError
from .experiments import EXPERIMENTS, SCALES, run_experiment
from .experiments.registry import check_overrides
from .results import identity_differences, load_results, save_results

EXIT_USAGE = 2
EXIT_FILES = 1


class _Parser(argparse.ArgumentParser):
    """argparse with one-line error messages (status 2) instead of usage + message."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer, got {value}")
    return value


def _replicates(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"replicates must be an integer of at least 2, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"replicates must be at least 2 (standard errors need two), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``moecl`` command."""
    parser = _Parser(
        prog="moecl",
        description="Mixture-of-Experts in continual learning (Li et al., ICLR 2025): "
        "run the book's experiments and save their results.",
    )
    parser.add_argument("--version", action="version", version=f"moecl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    commands.add_parser("list", help="list the experiments with one-line descriptions",
                        description="List the registered experiments with one-line descriptions.")

    names = "\n".join(f"  {name}: {entry.description}" for name, entry in EXPERIMENTS.items())
    presets = ", ".join(f"{name} (R={s.replicates}, T={s.rounds})" for name, s in SCALES.items())
    run = commands.add_parser(
        "run",
        help="run one experiment and write its results file",
        description=textwrap.fill(
            "Run one experiment and write DIR/<name>-<scale>-seed<S>.npz, a self-describing "
            "results file (arrays plus a JSON header); its path is printed at the end."
        ),
        epilog=f"experiments:\n{names}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("name", metavar="NAME", help="experiment to run (see 'moecl list')")
    run.add_argument("--scale", choices=tuple(SCALES) + ("long",), default="ci",
                     help=f"size preset: {presets} (default: ci)")
    run.add_argument("--seed", type=_seed, default=0, metavar="S",
                     help="non-negative integer seeding the pool and every replicate (default: 0)")
    run.add_argument("--replicates", type=_replicates, default=None, metavar="R",
                     help="number of Monte Carlo replicates, at least 2 (default: the scale's)")
    run.add_argument("--out", default="results", metavar="DIR",
                     help="directory of the results file, created if missing (default: results)")
    run.add_argument("--set", dest="overrides", action="append", type=_override, default=[],
                     metavar="FIELD=VALUE",
                     help="change a moecl.Config field in every setting, e.g. --set balance_loss=entropy "
                     "or --set expert_update=gradient --set gradient_steps=10 (repeatable); the results "
                     "file name then ends in the overrides")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                     help="where the deep experiments (CNN experts, moecl.deep) train: auto uses CUDA "
                     "when present (bf16 autocast there); default cpu, deterministic. The linear "
                     "experiments run on numpy and take no device")
    run.add_argument("--no-progress", dest="progress", action="store_false",
                     help="do not show progress bars on stderr")
    run.add_argument("--workers", type=_workers, default=1, metavar="N",
                     help="run the simulations in pieces on N local processes (moecl.sweep; the linear "
                     "experiments' numbers are one process's; deep-methods runs its seeds in pieces of "
                     "--set seeds_per_piece=K, whose numbers depend on K only; default 1)")
    run.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="run the pieces on a running Dask scheduler, e.g. tcp://10.0.0.5:8786 "
                     f"(needs Dask: {sweep.DASK_HINT})")
    run.add_argument("--force", action="store_true",
                     help="write over an existing results file of another run (another header); without it "
                     "such a file is kept and the command exits with status 1")
    return parser


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"workers must be a positive integer, got {text!r}")
    return value


def _on_executor(args, function):
    """``function`` running every simulation on the executor of --workers / --scheduler (`moecl.sweep`)."""
    def run(*positional, **keywords):
        with sweep.executor(args.workers, args.scheduler) as pool, sweep.using(pool, progress=args.progress):
            return function(*positional, **keywords)
    return run


def _override(text: str) -> tuple[str, object]:
    """FIELD=VALUE -> (field, value): an int, a float, None ('none') or the text itself."""
    field, sep, raw = text.partition("=")
    if not sep or not field:
        raise argparse.ArgumentTypeError(f"{text!r} is not FIELD=VALUE")
    for convert in (int, float):
        try:
            return field, convert(raw)
        except ValueError:
            pass
    return field, None if raw.lower() == "none" else raw


def result_path(directory, name: str, scale: str, seed: int, overrides=None, replicates=None, data=None) -> str:
    """Where ``run`` writes an experiment's results.

    ``DIR/<name>-<scale>-seed<S>[-R<R>][-FIELD=VALUE...][-data=<source>].npz``: ``replicates``
    is given when it differs from the preset, ``data`` names a fallback data source.
    Characters other than letters, digits and ``._+=-`` in values become ``_``, so a
    name never leaves ``DIR``.
    """
    parts = [f"{name}-{scale}-seed{seed}"]
    if replicates is not None:
        parts.append(f"R{replicates}")
    parts += [f"{field}={value}" for field, value in (overrides or {}).items()]
    if data:
        parts.append(f"data={data}")
    stem = "-".join(_safe(part) for part in parts)
    return os.path.join(os.fspath(directory), f"{stem}.npz")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+=-]", "_", str(text)).lstrip(".") or "_"


def _preset_replicates(name: str, scale: str, replicates):
    """``replicates`` if it differs from the experiment's preset (or the preset is unknown), else None."""
    if replicates is None:
        return None
    preset = EXPERIMENTS[name].preset(scale)
    return None if preset is not None and preset.replicates == replicates else replicates


def check_out_dir(directory) -> None:
    """Check before a run that results can be written in ``directory`` (created if missing).

    Raises OSError naming the directory when a path component is a file, or the
    directory cannot be created or written to.
    """
    directory = os.fspath(directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(f"--out {directory} is a file, not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        raise OSError(f"--out {directory}: cannot create the directory ({error.strerror or error})") from None
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise OSError(f"--out {directory}: cannot write there ({error.strerror or error})") from None


def _data_source(name: str, overrides: dict):
    """For an experiment that reads data (`moecl.experiments.Experiment.needs_data`): check the data directory; returns the fallback's name for the results name.

    ``MOECL_DATA`` set but missing, not a folder, or without a data set (or, for the
    digits stream, without MNIST) raises FileNotFoundError: no silent fallback. Without
    ``MOECL_DATA`` the digits stream may fall back to scikit-learn's digits: announced on
    stderr, and ``"sklearn-digits"`` is returned to mark the results name.
    """
    if not EXPERIMENTS[name].needs_data:
        return None
    from .deep import datasets

    root = datasets.check_data_dir()
    if overrides.get("stream", "digits") != "digits" or datasets.find_mnist(root) is not None:
        return None
    if datasets.data_dir_is_explicit():
        raise FileNotFoundError(f"MNIST not found in {datasets.DATA_ENV}={root}; the digits stream does not fall "
                                "back to scikit-learn's digits while MOECL_DATA is set")
    return "sklearn-digits"


def _existing_differs(path: str, expected: dict):
    """The reason not to write over ``path`` without --force, or None (absent, or the same run)."""
    if not os.path.lexists(path):
        return None
    if os.path.islink(path) or not os.path.isfile(path):
        return f"{path} exists and is not a regular file"
    try:
        header, _ = load_results(path)
    except (ResultsFileError, OSError) as error:
        return f"{path} exists and is not a valid results file ({error})"
    differences = [field for field, value in expected.items() if header.get(field) != value]
    if "header" in expected:
        differences = identity_differences(header, expected["header"])
    if differences:
        return f"{path} exists and holds another run (its {', '.join(differences)} differ{'s' * (len(differences) == 1)})"
    return None


def main(argv=None) -> int:
    """Entry point of the ``moecl`` command; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and argument errors
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else EXIT_USAGE)

    if args.command == "list":
        width = max(len(name) for name in EXPERIMENTS)
        for name, entry in EXPERIMENTS.items():
            print(f"{name:<{width}}  {entry.description}")
        return 0

    if args.name not in EXPERIMENTS:
        return _fail(f"unknown experiment {args.name!r}; choose from {', '.join(EXPERIMENTS)}", EXIT_USAGE)
    overrides = dict(args.overrides)
    if args.device is not None:
        if "device" in overrides:
            return _fail("give the device once: --device or --set device=..., not both", EXIT_USAGE)
        if not EXPERIMENTS[args.name].device:
            return _fail(f"--device applies to the deep experiments; {args.name} runs on numpy (CPU)", EXIT_USAGE)
        overrides["device"] = args.device
    try:
        check_overrides(args.name, overrides)
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if EXPERIMENTS[args.name].preset(args.scale) is None and EXPERIMENTS[args.name].presets is not None:
        return _fail(f"unknown scale {args.scale!r} for {args.name}; choose from "
                     f"{', '.join(EXPERIMENTS[args.name].presets)}", EXIT_USAGE)
    try:
        data = _data_source(args.name, overrides)
    except OSError as exc:
        return _fail(f"cannot read the data: {exc}", EXIT_FILES)
    replicates = _preset_replicates(args.name, args.scale, args.replicates)
    path = result_path(args.out, args.name, args.scale, args.seed, overrides, replicates=replicates, data=data)
    try:
        check_out_dir(args.out)
    except OSError as exc:
        return _fail(f"cannot write results: {exc}", EXIT_FILES)
    expected = {"experiment": args.name, "scale": args.scale, "seed": args.seed}
    preset = EXPERIMENTS[args.name].preset(args.scale)
    if args.replicates is not None or preset is not None:
        expected["replicates"] = args.replicates if args.replicates is not None else preset.replicates
    reason = None if args.force else _existing_differs(path, expected)
    if reason:
        return _fail(f"{reason}; nothing run (use --force to replace it, or another --out)", EXIT_FILES)

    checkpoint = path + ".ckpt" if EXPERIMENTS[args.name].checkpoints else None  # a rerun resumes from it
    try:
        header, arrays = _on_executor(args, run_experiment)(
            args.name, scale=args.scale, seed=args.seed, replicates=args.replicates, progress=args.progress,
            overrides=dict(overrides, checkpoint=checkpoint) if checkpoint else overrides,
        )
    except (ClusterError, SweepError) as exc:  # no Dask, no scheduler, a piece failed twice
        return _fail(str(exc), EXIT_FILES)
    except ValueError as exc:  # a value moecl.Config or moecl.simulate rejects, or a corrupt data file
        if _is_data_error(exc):
            return _fail(f"cannot read the data: {exc}", EXIT_FILES)
        return _fail(str(exc), EXIT_USAGE)
    except (OSError, pickle.UnpicklingError) as exc:  # data files of a deep experiment
        return _fail(f"cannot read the data: {exc}", EXIT_FILES)
    except MemoryError:
        return _fail("out of memory; use fewer replicates (--replicates) or rounds", EXIT_FILES)
    except KeyboardInterrupt:
        return _fail("interrupted; no results file written", 130)

    if data:
        header["data_fallback"] = data
    bad = _non_finite(arrays)
    if bad:
        return _fail(f"the results came out infinite ({', '.join(bad[:3])}); no results file written", EXIT_FILES)
    reason = None if args.force else _existing_differs(path, {"header": header})
    if reason:
        return _fail(f"{reason}; results not written (use --force to replace it, or another --out)", EXIT_FILES)
    try:
        save_results(path, header, arrays)
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc}", EXIT_FILES)
    except KeyboardInterrupt:
        return _fail("interrupted; no results file written", 130)
    if checkpoint and os.path.isdir(checkpoint):  # the results file holds everything the checkpoints did
        shutil.rmtree(checkpoint, ignore_errors=True)
    if args.progress:
        print(f"{args.name}: {header['replicates']} replicates x {header['rounds']} rounds "
              f"in {header['wall_time']:.1f} s", file=sys.stderr)
    print(path)
    return 0


def _is_data_error(exc: ValueError) -> bool:
    """A ValueError about data: a loader's `DataError`, or a ValueError raised from an OSError."""
    return isinstance(exc, DataError) or isinstance(exc.__cause__, OSError)


def _non_finite(arrays: dict) -> list[str]:
    """Names of float arrays holding +-inf (NaN marks undefined points, e.g. F_1, and is allowed)."""
    return [name for name, value in arrays.items()
            if np.asarray(value).dtype.kind in "fc" and np.isinf(np.asarray(value)).any()]


def _fail(message: str, status: int) -> int:
    print(f"moecl: error: {_one_line(message)}", file=sys.stderr)
    return status


def _one_line(message: str) -> str:
    return " ".join(str(message).split())
