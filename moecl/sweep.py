"""Sweeps in pieces on any executor, with the numbers of a one-process run.

The engine gives replicate k the same numbers alone or in any batch, and a configuration
the same numbers alone or batched with others (`moecl.simulate_many`). A sweep (several
configurations times R replicates) is therefore split into independent *pieces*, each a
group of configurations that may share a batch times a range of replicate indices, sized
to a memory budget; the pieces run on any `concurrent.futures.Executor` (a process pool, a
Dask cluster's executor) or one after the other in this process, and their records are
concatenated along the replicate axis. The result is the one-process run's bit for bit,
whatever the executor, the number of workers or the piece size.

* `plan` cuts a sweep into pieces and `run_pieces` runs them; this module knows nothing of
  the engine: `moecl.simulation.simulate_sweep` runs a sweep of the linear engine through
  them, and `moecl.simulate` and `moecl.simulate_many` take ``executor=`` and call it.
* `using` sets an executor for a block of code: every `moecl.simulate` and
  `moecl.simulate_many` call inside it (those of the registered experiments included)
  runs in pieces on it. `executor` makes one from ``--workers`` and ``--scheduler``.
* Progress is a bar over pieces, fed as they complete. A piece that fails is retried once
  (on the executor, or in this process when the executor itself is broken, e.g. after a
  pool worker was killed); a second failure raises `SweepError` naming the piece's
  configurations and replicate range. Nothing is returned, so nothing can be written,
  before every piece is done.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from .config import Config
from .errors import ClusterError, SweepError
from .records import BATCHABLE_FIELDS, record_bytes_per_round
from .tasks import replicate_indices

#: Memory budget of one piece's records, bytes (its share of `moecl.records.record_bytes_per_round`).
PIECE_BYTES = 2e8

#: How to install the optional dependency of ``--scheduler``.
DASK_HINT = "pip install 'moecl[cluster]' (or: pip install 'dask[distributed]')"

_current = contextvars.ContextVar("moecl_sweep_executor", default=(None, None))


@dataclass(frozen=True)
class Piece:
    """Configurations ``positions`` of a sweep (one batchable group) times replicates ``replicates``."""

    number: int
    positions: tuple
    configs: tuple
    replicates: np.ndarray
    seed: int
    pool: object = None

    def describe(self) -> str:
        first, last = int(self.replicates[0]), int(self.replicates[-1])
        span = f"replicate {first}" if first == last else f"replicates {first}..{last}"
        fields = {}
        for config in self.configs:
            for name, value in config.as_dict().items():
                fields.setdefault(name, []).append(value)
        differing = {name: values for name, values in fields.items() if len(set(map(repr, values))) > 1}
        shown = ", ".join(f"{name}={values if len(values) > 1 else values[0]!r}" for name, values in differing.items())
        what = f"configurations {list(self.positions)}" + (f" ({shown})" if shown else "")
        config = self.configs[0]
        return f"piece {self.number}: {what}, {span} (M={config.M}, T={config.T}, seed {self.seed})"


def _structure(config: Config) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in config.as_dict().items() if k not in BATCHABLE_FIELDS))


def plan(configs, replicates, seed: int = 0, budget_bytes: float = PIECE_BYTES, min_pieces: int = 1,
         piece_replicates: int | None = None, pool=None) -> list[Piece]:
    """Split configurations x replicates into pieces whose records fit ``budget_bytes``.

    Configurations that may share a batch (they differ only in `moecl.records.BATCHABLE_FIELDS`)
    are grouped, in their order; each group is cut into replicate ranges, and the ranges into
    runs of configurations, with at least ``min_pieces`` pieces when the sweep allows so many.
    ``piece_replicates`` fixes the replicates per piece instead.
    """
    configs = list(configs)
    indices = replicate_indices(replicates)
    groups: dict[tuple, list[int]] = {}
    for position, config in enumerate(configs):
        groups.setdefault(_structure(config), []).append(position)
    units = len(configs) * len(indices)  # (configuration, replicate) pairs
    pieces = []
    for positions in groups.values():
        config = configs[positions[0]]
        unit_bytes = config.T * record_bytes_per_round(config) + 16 * config.M * config.d
        per_piece = max(1, int(budget_bytes // unit_bytes))
        per_piece = min(per_piece, max(1, math.ceil(units / max(1, min_pieces))))
        if piece_replicates is not None:
            r = int(piece_replicates)
        else:
            r = min(len(indices), per_piece)
        c = max(1, per_piece // r) if piece_replicates is None else len(positions)
        for start in range(0, len(indices), r):
            for first in range(0, len(positions), c):
                chosen = tuple(positions[first:first + c])
                pieces.append(Piece(len(pieces), chosen, tuple(configs[p] for p in chosen),
                                    indices[start:start + r], int(seed), pool))
    return pieces


def executor_workers(executor: Executor) -> int:
    """How many pieces the executor runs at once (its pool size; the CPUs here if it does not say)."""
    for name in ("_max_workers", "workers"):
        value = getattr(executor, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return os.cpu_count() or 1


def batches(configs, replicates, budget_bytes: float = PIECE_BYTES) -> list[tuple]:
    """The positions of the configurations that run together, each run of them one engine batch
    of every replicate: the pieces of `plan` (one process, ``budget_bytes``) with their replicate
    ranges joined. `moecl.experiments.Recorder.simulate_batched` runs its settings so."""
    pieces = plan(configs, replicates, budget_bytes=budget_bytes, min_pieces=1)
    return list(dict.fromkeys(piece.positions for piece in pieces))


def run_pieces(pieces: list, executor, progress: bool = False, *, function) -> dict:
    """``function(piece)`` of every piece, by ``piece.number``: on ``executor`` (``None``: here,
    one after the other), each failed piece retried once, then `SweepError` naming it
    (``piece.describe()``). ``function`` (`moecl.simulation.run_piece` for the linear engine,
    `moecl.experiments.deep_methods.run_deep_piece` for the deep one) must be a module-level
    function (it is pickled)."""
    from tqdm import tqdm

    bar = tqdm(total=len(pieces), desc="pieces", unit="piece", disable=not progress)
    done, tries, pending = {}, {piece.number: 0 for piece in pieces}, {}
    try:
        if executor is None:
            for piece in pieces:
                done[piece.number] = _in_process(piece, function)
                bar.update(1)
            return done
        pending = {executor.submit(function, piece): piece for piece in pieces}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                piece = pending.pop(future)
                try:
                    done[piece.number] = future.result()
                    bar.update(1)
                    continue
                except Exception as error:  # noqa: BLE001 - any failure of a piece is retried once
                    tries[piece.number] += 1
                    if tries[piece.number] > 1:
                        raise SweepError(f"{piece.describe()} failed twice: {_one_line(error)}") from error
                try:
                    pending[executor.submit(function, piece)] = piece
                except Exception:  # noqa: BLE001 - a broken executor (a killed pool worker): retry here
                    done[piece.number] = _in_process(piece, function, retry=True)
                    bar.update(1)
        return done
    except BaseException:  # a piece failed twice, or Ctrl-C: cancel what has not started
        for future in pending:
            future.cancel()
        raise
    finally:
        bar.close()


def _in_process(piece, function, retry: bool = False):
    try:
        return function(piece)
    except Exception as error:  # noqa: BLE001
        if retry:
            raise SweepError(f"{piece.describe()} failed twice: {_one_line(error)}") from error
        try:
            return function(piece)
        except Exception as again:  # noqa: BLE001
            raise SweepError(f"{piece.describe()} failed twice: {_one_line(again)}") from again


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


@contextlib.contextmanager
def using(executor: Executor | None, **options):
    """Run every `moecl.simulate` / `moecl.simulate_many` call of the block on ``executor`` in
    pieces (``None``: in one batch in this process, as without this block). ``options`` go to
    `moecl.simulation.simulate_sweep` (``budget_bytes``, ``min_pieces``, ``progress``)."""
    token = _current.set((executor, options))
    try:
        yield executor
    finally:
        _current.reset(token)


def current() -> tuple:
    """The executor set by `using` for this context and its options, or (None, None)."""
    return _current.get()


@contextlib.contextmanager
def executor(workers: int = 1, scheduler: str | None = None, timeout: float = 10.0):
    """The executor of ``--workers N`` and ``--scheduler ADDRESS``: a pool of N local
    processes, a running Dask scheduler's executor, or ``None`` (one process, N = 1).

    Raises `ClusterError` (one line) when Dask is not installed or the scheduler cannot be
    reached within ``timeout`` seconds. Shut down on leaving the block.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r} must be a positive integer")
    if scheduler is not None:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ClusterError(f"--scheduler needs Dask, which is not installed: {DASK_HINT}") from None
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {_one_line(error)}") from None
        try:
            pool = client.get_executor(pure=False)
            pool.workers = max(1, sum(client.nthreads().values()))
            yield pool
        finally:
            client.close()
        return
    if workers == 1:
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=workers)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


__all__ = ["ClusterError", "DASK_HINT", "PIECE_BYTES", "Piece", "SweepError", "batches", "current", "executor",
           "executor_workers", "plan", "run_pieces", "using"]
