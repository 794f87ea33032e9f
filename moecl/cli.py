"""Command line: run the book's named experiments and save their results.

    python -m moecl list
    python -m moecl run NAME [--scale ci|paper] [--seed S] [--replicates R] [--out DIR]
                             [--set FIELD=VALUE ...] [--device auto|cpu|cuda] [--no-progress]

``run`` simulates the experiment (`moecl.experiments`) and writes one results file
``DIR/<name>-<scale>-seed<S>.npz`` (`moecl.results`), then prints its path on
stdout. Errors in the arguments (unknown experiment or scale, negative seed, fewer
than two replicates, a value the configuration rejects) exit with status 2 and a
one-line message on stderr; data that cannot be read (a missing or corrupt file of
a deep experiment) exits with status 1 and one line.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import textwrap

from . import __version__
from .experiments import EXPERIMENTS, SCALES, run_experiment
from .results import save_results

EXIT_USAGE = 2


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
    run.add_argument("--scale", choices=tuple(SCALES), default="ci",
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
    return parser


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


def result_path(directory, name: str, scale: str, seed: int, overrides=None) -> str:
    """Where ``run`` writes an experiment's results: ``DIR/<name>-<scale>-seed<S>[-FIELD=VALUE...].npz``."""
    suffix = "".join(f"-{field}={value}" for field, value in (overrides or {}).items())
    return os.path.join(os.fspath(directory), f"{name}-{scale}-seed{seed}{suffix}.npz")


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
        if not args.name.startswith("deep"):
            return _fail(f"--device applies to the deep experiments; {args.name} runs on numpy (CPU)", EXIT_USAGE)
        overrides["device"] = args.device
    try:
        header, arrays = run_experiment(
            args.name, scale=args.scale, seed=args.seed, replicates=args.replicates, progress=args.progress,
            overrides=overrides,
        )
    except ValueError as exc:  # a value moecl.Config or moecl.simulate rejects
        return _fail(str(exc), EXIT_USAGE)
    except (OSError, pickle.UnpicklingError) as exc:  # data files of a deep experiment
        return _fail(f"cannot read the data: {exc}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted; no results file written", 130)

    path = result_path(args.out, args.name, args.scale, args.seed, overrides)
    try:
        save_results(path, header, arrays)
    except OSError as exc:
        return _fail(f"cannot write {path}: {exc}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted; no results file written", 130)
    if args.progress:
        print(f"{args.name}: {header['replicates']} replicates x {header['rounds']} rounds "
              f"in {header['wall_time']:.1f} s", file=sys.stderr)
    print(path)
    return 0


def _fail(message: str, status: int) -> int:
    print(f"moecl: error: {_one_line(message)}", file=sys.stderr)
    return status


def _one_line(message: str) -> str:
    return " ".join(str(message).split())
