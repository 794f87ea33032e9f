"""The entry points of the linear MoE: `simulate`, `simulate_many` and sweeps in pieces.

This module sits above both the engine (`moecl.algorithm`, one batch in this process) and
the sweep machinery (`moecl.sweep`, pieces on an executor), so that neither knows the
other: `simulate` and `simulate_many` run one batch here, or, with an executor (given, or
set by `moecl.sweep.using`), hand the configurations to `simulate_sweep`, which plans the
pieces (`moecl.sweep.plan`), runs each with `run_piece` (straight into the engine) and
concatenates their records along the replicate axis.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor

import numpy as np

from . import sweep
from .algorithm import simulate_batch
from .config import Config
from .records import BATCHABLE_FIELDS, RECORDS, SimulationResult
from .tasks import Pool


def simulate(
    config: Config,
    replicates=1,
    seed: int = 0,
    pool: Pool | tuple | None = None,
    progress: bool = False,
    executor=None,
) -> SimulationResult:
    """Run Algorithm 1 for R Monte Carlo replicates at once.

    Parameters
    ----------
    config: the experiment (`moecl.Config`).
    replicates: the number R of replicates, or explicit replicate indices; replicate
        k always uses the k-th child of the seed, so it gives identical results
        alone or inside any batch.
    seed: one non-negative integer seeding everything.
    pool: ground truths and feature signals, a `moecl.Pool` or a pair (W, V) of
        (N, d) arrays; ``None`` draws them from the seed (`moecl.tasks.make_pool`).
    progress: show a progress bar over rounds.
    executor: a `concurrent.futures.Executor` that runs the replicates in pieces
        (`moecl.sweep`; the same numbers); ``None``: the one set by `moecl.sweep.using`, if
        any, else this process in one batch.

    Returns a `SimulationResult` with per-round arrays of leading shape (R, T).
    """
    if not isinstance(config, Config):
        raise ValueError(f"config must be a moecl.Config, got {type(config).__name__}")
    executor, options = _sweep_executor(executor)
    if executor is not None:
        options["progress"] = bool(options.get("progress")) or progress  # `using` may set it too
        return simulate_sweep([config], replicates, seed, executor, pool=pool, **options)[0]
    return simulate_batch([config], replicates, seed, pool, progress)[0]


def simulate_many(configs, replicates=1, seed: int = 0, progress: bool = False, executor=None) -> list[SimulationResult]:
    """Run several configurations of Algorithm 1 in one batched call (the regime map).

    The configurations may differ in the fields of `BATCHABLE_FIELDS` (sigma0, sigma_t,
    the gate constants, T1, ...) and must agree in all others. Configuration c simulates
    the same replicates of the same seed as ``simulate(configs[c], replicates, seed)``
    and gives the same numbers (its pool is drawn from the seed with its own sigma0),
    so runs of different configurations are paired by common random numbers; the rows
    of all configurations share each round's numpy calls, which is what makes a grid
    of small settings fast. ``executor``: as for `simulate`, pieces of configurations x
    replicates on a `concurrent.futures.Executor` (`moecl.sweep`), with the same numbers.
    Returns one `SimulationResult` per configuration.
    """
    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: give at least one moecl.Config")
    for position, config in enumerate(configs):
        if not isinstance(config, Config):
            raise ValueError(f"configs[{position}] must be a moecl.Config, got {type(config).__name__}")
    first = configs[0].as_dict()
    for position, config in enumerate(configs[1:], start=1):
        for name, value in config.as_dict().items():
            if name not in BATCHABLE_FIELDS and value != first[name]:
                raise ValueError(
                    f"configs[{position}].{name}={value!r} differs from configs[0].{name}={first[name]!r}; "
                    f"only {', '.join(BATCHABLE_FIELDS)} may differ within one batch"
                )
    executor, options = _sweep_executor(executor)
    if executor is not None:
        options["progress"] = bool(options.get("progress")) or progress  # `using` may set it too
        return simulate_sweep(configs, replicates, seed, executor, **options)
    return simulate_batch(configs, replicates, seed, None, progress)


def _sweep_executor(executor) -> tuple:
    """``executor`` and no options, or the executor and options of `moecl.sweep.using`."""
    if executor is not None:
        return executor, {}
    executor, options = sweep.current()
    return executor, dict(options or {})


def run_piece(piece: sweep.Piece) -> list:
    """The `moecl.SimulationResult` of each configuration of ``piece`` (`moecl.sweep.Piece`), run in
    this process in one batch of the engine."""
    return simulate_batch(list(piece.configs), piece.replicates, piece.seed, piece.pool)


def simulate_sweep(configs, replicates=1, seed: int = 0, executor: Executor | None = None, progress: bool = False,
                   budget_bytes: float = sweep.PIECE_BYTES, min_pieces: int | None = None,
                   piece_replicates: int | None = None, pool=None) -> list:
    """Run every configuration for the same replicates of ``seed``, in pieces; one result each.

    ``executor``: a `concurrent.futures.Executor`, or ``None`` for this process, piece after
    piece. ``min_pieces``: at least this many pieces (default: the executor's workers,
    1 without an executor). The results equal ``simulate_many(configs, replicates, seed)``
    (or `simulate` of each configuration) bit for bit; configurations of different
    structure may be mixed. ``pool``: a given pool, for one configuration only.
    """
    configs = list(configs)
    if not configs:
        raise ValueError("configs is empty: give at least one moecl.Config")
    if pool is not None and len(configs) != 1:
        raise ValueError("a given pool needs exactly one configuration")
    if min_pieces is None:
        min_pieces = 1 if executor is None else sweep.executor_workers(executor)
    pieces = sweep.plan(configs, replicates, seed, budget_bytes, min_pieces, piece_replicates, pool)
    started = time.perf_counter()
    done = sweep.run_pieces(pieces, executor, progress, function=run_piece)
    wall_time = time.perf_counter() - started
    parts: list[list] = [[] for _ in configs]
    for piece in pieces:  # planned in replicate order within each configuration
        for position, result in zip(piece.positions, done[piece.number]):
            parts[position].append(result)
    merged = []
    for config, results in zip(configs, parts):
        first = results[0]
        records = {record.name: np.concatenate([getattr(r, record.name) for r in results]) for record in RECORDS}
        merged.append(SimulationResult(config=config, seed=first.seed, pool=first.pool, wall_time=wall_time,
                                       replicates=np.concatenate([r.replicates for r in results]), **records))
    return merged


__all__ = ["run_piece", "simulate", "simulate_many", "simulate_sweep"]
