"""Algorithm 1: the linear MoE in continual learning, batched over Monte Carlo replicates.

`simulate` is the one entry point that chapters, the command line and tests use.
All state carries a leading replicate axis R, so one call simulates many seeds; a
plain per-replicate implementation lives in `moecl.reference` as the test oracle.

Each round t = 1..T (Algorithm 1) takes six steps, one function each, over one state
(`_State`) that carries the experts, the gate and the metrics' bookkeeping from round to
round:

1. `_draw`: the task n_t, its data X_t (Definition 1) and the routing noise (drawn a
   block of rounds ahead, `_prepare_block`);
2. `_route`: the gate values of Eq. (1) and the router's choice, Eq. (2) (``Config.router``,
   `moecl.gate.ROUTERS`);
3. `_learn`: the selected expert learns the task by Eq. (5) (``Config.expert_update``,
   `moecl.experts.EXPERT_UPDATES`); the others stay put;
4. `_share`: once the gate is frozen, the rest of the selected expert's set may share the
   round (``Config.sharing``, a book choice of book/sharing.md; the paper's experts do not);
5. `_tally`: the forgetting F_t and generalization error G_t (below);
6. `_update_gate`: the re-opening rule (``Config.reopen``) and, for t > T1, the termination
   rule (``Config.termination``) inspect the gate; while it has not terminated, Theta takes
   the step of Eq. (9) on the locality loss Eq. (6) plus the load-balancing loss Eq. (7).

and `_record` writes the round's records (`RECORDS`, declared once for the engine,
`SimulationResult` and the experiments' memory budget), a block of rounds at a time (`_flush`).

Metrics (paper, Section 4): the model error of task i under w is
``E_i(w) = ||w - w_{n_i}||^2``; forgetting
``F_t = 1/(t-1) sum_{i<t} [E_i(w_t^(m_i)) - E_i(w_i^(m_i))]``; generalization error
``G_t = 1/t sum_{i<=t} E_i(w_t^(m_i))``. The engine tracks them in O(M N) per round
with counts ``C[m, n]`` of the tasks of truth n learned by expert m, since
``sum_i E_i(w_t^(m_i)) = sum_{m,n} C[m, n] ||w_t^(m) - w_n||^2``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import experts, gate, limits
from .config import Config
from .progress import progress_bar
from .tasks import (
    CHUNK,
    Pool,
    check_pool,
    draw_rounds,
    feature_variances,
    make_pool,
    replicate_indices,
    round_blocks,
    samples,
    seed_sequences,
)


@dataclass(frozen=True)
class Record:
    """One record of a run: its name, its axes after the replicate axis (``"T"`` first for a
    per-round record), dtype, the value it is allocated with (``None``: every entry is
    written by the engine) and its meaning."""

    name: str
    axes: tuple
    dtype: type
    fill: float | int | None
    doc: str

    @property
    def per_round(self) -> bool:
        return self.axes[:1] == ("T",)

    def shape(self, config: Config) -> tuple:
        """The shape after the replicate axis."""
        sizes = {"T": config.T, "M": config.M, "d": config.d}
        return tuple(sizes[axis] for axis in self.axes)


#: The records of a run, each array with the replicate axis R first. Adding a record
#: here gives it its place in `SimulationResult`, its allocation in the engine and its
#: share of `record_bytes_per_round`; the engine's steps write it.
RECORDS = (
    Record("tasks", ("T",), np.int64, None, "the ground truth n_t of each round"),
    Record("experts", ("T",), np.int64, None, "the expert m_t that learned it (the routing history)"),
    Record("forgetting", ("T",), np.float64, np.nan, "F_t (NaN at t = 1, where it is undefined)"),
    Record("generalization", ("T",), np.float64, None, "G_t"),
    Record("gate_values", ("T", "M"), np.float64, None, "h_m(X_t) at routing time"),
    Record("change_norm", ("T",), np.float64, None, "||w_t - w_{t-1}|| of the selected expert"),
    Record("closest_truth", ("T", "M"), np.int16, None,
           "index of the ground truth closest to each expert's model after the round"),
    Record("termination_round", (), np.int64, -1,
           "the round T2 at which the gate first stopped training (-1: never)"),
    Record("drift_generalization", ("T",), np.float64, np.nan,
           "with ``Config.drift_round`` T_d, G_t restricted to the tasks that arrived after the drift, "
           "``1/(t - T_d) sum_{T_d < i <= t} E_i(w_t^(m_i))`` (NaN up to T_d, and without drift)"),
    Record("gate_trained", ("T",), np.bool_, None,
           "whether the gate took its step Eq. (9) in round t (it may train again after a re-opening, "
           "``Config.reopen``)"),
    Record("final_experts", ("M", "d"), np.float64, 0.0, "the experts' models at the end"),
    Record("final_theta", ("M", "d"), np.float64, 0.0, "the gate's parameters Theta at the end"),
)


def record_bytes_per_round(config: Config) -> int:
    """Bytes of the per-round records of one replicate and one round (what grows with R T)."""
    return sum(np.dtype(record.dtype).itemsize * math.prod(record.shape(config)[1:])
               for record in RECORDS if record.per_round)


def allocate_records(config: Config, replicates: int) -> dict:
    """The arrays of `RECORDS` for ``replicates`` rows, filled with their start values."""
    records = {}
    for record in RECORDS:
        shape = (replicates, *record.shape(config))
        if record.fill is None:
            records[record.name] = np.empty(shape, dtype=record.dtype)
        else:
            records[record.name] = np.full(shape, record.fill, dtype=record.dtype)
    return records


class _ResultMethods:
    """What a `SimulationResult` computes from its records."""

    @property
    def rounds(self) -> np.ndarray:
        """Round numbers t = 1..T."""
        return np.arange(1, self.config.T + 1)

    def load(self) -> np.ndarray:
        """f_t^(m): fraction of rounds 1..t routed to each expert, (R, T, M)."""
        onehot = self.experts[..., None] == np.arange(self.config.M)
        return np.cumsum(onehot, axis=1) / self.rounds[:, None]

    def replicate(self, k: int) -> "SimulationResult":
        """The records of the k-th simulated replicate alone (a batch of one)."""
        pick = slice(k, k + 1)
        return dataclasses.replace(
            self, replicates=self.replicates[pick], **{record.name: getattr(self, record.name)[pick] for record in RECORDS}
        )


def _axes_text(record: Record) -> str:
    return "(" + ", ".join(("R",) + record.axes) + ")"


SimulationResult = dataclasses.make_dataclass(
    "SimulationResult",
    [("config", Config), ("seed", int), ("replicates", np.ndarray), ("pool", Pool)]
    + [(record.name, np.ndarray) for record in RECORDS]
    + [("wall_time", float, field(default=0.0, compare=False))],
    bases=(_ResultMethods,),
    namespace={
        "__module__": __name__,
        "__doc__": "Per-round records of R replicates of Algorithm 1 (replicate axis first).\n\n"
        + "\n".join(f"{record.name} {_axes_text(record)}: {record.doc}." for record in RECORDS)
        + "\n\nconfig, seed: the run's `Config` and seed. pool: the ground truths and feature signals shared by "
        "all replicates. replicates: the replicate indices simulated. wall_time: seconds of the engine call.",
    },
)


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
        from .sweep import simulate_sweep

        options["progress"] = bool(options.get("progress")) or progress  # `using` may set it too
        return simulate_sweep([config], replicates, seed, executor, pool=pool, **options)[0]
    return _simulate_batch([config], replicates, seed, pool, progress)[0]


def _sweep_executor(executor) -> tuple:
    """``executor`` and no options, or the executor and options of `moecl.sweep.using`."""
    if executor is not None:
        return executor, {}
    from .sweep import current

    executor, options = current()
    return executor, dict(options or {})


#: `Config` fields that may differ between the configurations of one `simulate_many`
#: call: scales that enter the computation as numbers. Every other field fixes a shape
#: or a mechanism and must be the same in all of them.
BATCHABLE_FIELDS = ("sigma0", "eta", "alpha", "lambda_", "Gamma", "T1", "beta", "sigma_t", "v_norm", "cluster_spread")


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
        from .sweep import simulate_sweep

        options["progress"] = bool(options.get("progress")) or progress  # `using` may set it too
        return simulate_sweep(configs, replicates, seed, executor, **options)
    return _simulate_batch(configs, replicates, seed, None, progress)


def _simulate_batch(configs: list, replicates, seed: int, pool, progress: bool) -> list[SimulationResult]:
    indices = replicate_indices(replicates)
    limits.check_memory(configs[0], len(indices), configs=len(configs))  # before anything is allocated
    pool_ss, replicate_ss = seed_sequences(seed, indices)
    if pool is None:
        pools = [make_pool(config, np.random.default_rng(pool_ss)) for config in configs]
    else:
        pools = [check_pool(configs[0], pool)]
    # Every configuration replays the same replicate streams, each from fresh generators.
    rngs = [np.random.default_rng(ss) for _ in configs for ss in replicate_ss]
    R = len(indices)
    batch = _Batch(configs, pools, [slice(c * R, (c + 1) * R) for c in range(len(configs))])
    started = time.perf_counter()
    try:
        records = _run(batch, rngs, progress)
    except np.linalg.LinAlgError as error:
        raise limits.singular_error(configs) from error
    wall_time = time.perf_counter() - started
    return [
        SimulationResult(
            config=config,
            seed=int(seed),
            replicates=indices,
            pool=pool,
            wall_time=wall_time,
            **{key: value[rows] for key, value in records.items()},
        )
        for config, pool, rows in zip(configs, pools, batch.slices)
    ]


@dataclass
class _Batch:
    """The configurations of one engine call, their pools and their (contiguous) rows."""

    configs: list
    pools: list
    slices: list

    @property
    def config(self) -> Config:
        """The shared structure (every field outside `BATCHABLE_FIELDS`)."""
        return self.configs[0]

    def rows(self, name: str, dtype=float):
        """Field ``name`` per row, (R,); the plain value when there is one configuration."""
        if len(self.configs) == 1:
            return getattr(self.configs[0], name)
        return np.concatenate([np.full(rows.stop - rows.start, getattr(config, name), dtype=dtype)
                               for config, rows in zip(self.configs, self.slices)])


class _Engine:
    """What stays fixed through one engine call: sizes, per-row constants, pools, strategies."""

    def __init__(self, batch: _Batch, R: int):
        config = self.config = batch.config
        self.batch = batch
        self.R, self.T, self.M, self.N, self.d = R, config.T, config.M, config.pool_size, config.d
        self.one = one = len(batch.configs) == 1
        # Per-row gate constants: plain numbers for one configuration, columns otherwise.
        column = (lambda value: value) if one else (lambda value: value[:, None])
        self.eta, self.alpha, self.Gamma = (column(batch.rows(name)) for name in ("eta", "alpha", "Gamma"))
        self.lambda_ = batch.rows("lambda_") if one else batch.rows("lambda_")[:, None, None]
        self.T1 = batch.rows("T1", dtype=np.int64)
        self.W = batch.pools[0].W if one else np.concatenate(
            [np.broadcast_to(p.W, (s.stop - s.start, *p.W.shape)) for p, s in zip(batch.pools, batch.slices)])
        self.router = gate.ROUTERS[config.router]
        self.update = experts.EXPERT_UPDATES[config.expert_update]
        self.termination = gate.TERMINATION_RULES[config.termination]
        self.reopening = gate.REOPEN_RULES[config.reopen]
        self.balance = gate.BALANCE_LOSSES[config.balance_loss]  # Eq. (7) or the entropy bonus
        self.locality = gate.LOCALITY_LOSSES[config.locality_loss]  # Eq. (6), or none (an ablation)
        self.everyone = np.arange(R)
        # Model errors E(w) = ||w - w_n||^2, or Sigma-weighted: distances after scaling the
        # coordinates by sqrt(diag Sigma) (book/similarity.md).
        self.scale = np.sqrt(feature_variances(self.d, config.anisotropy)) if config.error_metric == "sigma" else None
        self.W_err = [pool.W if self.scale is None else pool.W * self.scale for pool in batch.pools]
        self.W_sq = [np.sum(Wg * Wg, axis=1) for Wg in self.W_err]

    def errors_of(self, models: np.ndarray, which=None) -> np.ndarray:
        """E_n of the models (r, d) or (r, M, d) of every row, or of the rows of the mask
        ``which``, -> (r, N) or (r, M, N); each configuration's rows against its own pool."""
        models = models if self.scale is None else models * self.scale
        picked = self.everyone if which is None else np.flatnonzero(which)  # sorted row numbers
        values = np.empty((*models.shape[:-1], self.N))
        for g, rows in enumerate(self.batch.slices):  # contiguous rows: a view, as if it ran alone
            inside = slice(*np.searchsorted(picked, (rows.start, rows.stop)))
            part = models[inside]
            if len(part):
                flat = experts.squared_distances_fast(part.reshape(-1, self.d), self.W_err[g], self.W_sq[g])
                values[inside] = flat.reshape(*part.shape[:-1], self.N)
        return values


@dataclass
class _State:
    """What Algorithm 1 carries from round to round, replicate axis first."""

    records: dict  # the arrays of `RECORDS`
    block: dict  # (R, CHUNK, ...) buffers of the per-round records written in every round, `_flush`ed per block
    expert_models: np.ndarray  # (R, M, d) w^(m), the record final_experts
    theta: np.ndarray  # (R, M, d) the gate's Theta, the record final_theta
    errors: np.ndarray  # (R, M, N) E_n(w^(m))
    closest: np.ndarray  # (R, M) the truth nearest to each expert
    learned: np.ndarray  # (R, M, N) C[m, n]: tasks of truth n learned by expert m
    learned_since_drift: np.ndarray | None  # C[m, n] over the tasks after the drift round
    error_when_learned: np.ndarray  # (R,) sum_{i<=t} E_i(w_i^(m_i))
    routed: np.ndarray  # (R, M) rounds routed to each expert so far
    flags: np.ndarray  # the termination rule's flags
    training: np.ndarray  # (R,) whether the gate trains
    check_after: object  # termination checks come after this round (T1, or T1 after a re-opening)
    reopen_memory: object  # the re-opening rule's memory of a frozen gate


def _initial_state(engine: _Engine) -> _State:
    R, M, N = engine.R, engine.M, engine.N
    records = allocate_records(engine.config, R)
    errors = np.empty((R, M, N))
    closest = np.empty((R, M), dtype=np.int64)
    for rows, norms in zip(engine.batch.slices, engine.W_sq):  # every expert starts at 0
        errors[rows] = norms
        closest[rows] = np.argmin(norms)
    config = engine.config
    one_T1 = engine.one and config.reopen == "never"
    block = {record.name: np.empty((R, CHUNK, *record.shape(config)[1:]), dtype=record.dtype)
             for record in RECORDS if record.per_round and record.fill is None}
    return _State(
        records=records,
        block=block,
        expert_models=records["final_experts"],
        theta=records["final_theta"],
        errors=errors,
        closest=closest,
        learned=np.zeros((R, M, N)),
        learned_since_drift=np.zeros((R, M, N)) if config.drift_round is not None else None,
        error_when_learned=np.zeros(R),
        routed=np.zeros((R, M)),
        flags=engine.termination.initial_flags((R, M)),
        training=np.ones(R, dtype=bool),
        check_after=engine.T1 if one_T1 else np.broadcast_to(engine.T1, (R,)).copy(),
        reopen_memory=engine.reopening.initial_state(R, config),
    )


@dataclass
class _Block:
    """What does not depend on the state, for a block of c rounds: task indices (R, c), routing
    noise (R, c, M), samples Z = X^T (R, c, s, d), gate inputs (R, c, d) of Eq. (1), Gram
    factors (R, c, s, s) and what the expert update prepares (`moecl.experts.EXPERT_UPDATES`)."""

    tasks: np.ndarray
    noise: np.ndarray
    Z: np.ndarray
    xbar: np.ndarray
    L: np.ndarray
    prepared: np.ndarray | None


def _prepare_block(engine: _Engine, rngs: list, start: int, length: int) -> _Block:
    batch = engine.batch
    draws = draw_rounds(batch.config, rngs, length, start)
    Z = draws.noise  # turned into the samples in place
    for each, pool, rows in zip(batch.configs, batch.pools, batch.slices):  # sigma_t, beta, V per configuration
        samples(each, pool.V, draws.tasks[rows], draws.signal_pos[rows], draws.noise[rows], out=Z[rows])
    return _Block(
        tasks=draws.tasks,
        noise=engine.lambda_ * draws.route_uniform,  # Eq. (2): r^(m) ~ Unif[0, lambda]
        Z=Z,
        xbar=np.sum(Z, axis=2),  # Eq. (1): sum of the columns of X_t
        L=experts.gram_factor(Z),  # X_t^T X_t = L L^T
        prepared=engine.update.prepare(Z),
    )


@dataclass
class _Round:
    """Round t: its data (from `_draw`) and what the steps make of them."""

    t: int
    j: int  # its place in its block of rounds
    n: np.ndarray  # (R,) the task's truth
    target: np.ndarray  # (R, d) w_{n_t}
    Z: np.ndarray  # (R, s, d) the samples X_t^T
    L: np.ndarray  # (R, s, s) Gram factor
    prepared: np.ndarray | None
    xbar: np.ndarray  # (R, d) gate input
    noise: np.ndarray  # (R, M) routing noise
    h: np.ndarray | None = None  # (R, M) gate values
    m: np.ndarray | None = None  # (R,) selected expert
    change: np.ndarray | None = None  # (R, d) its change
    change_norm: np.ndarray | None = None  # (R,)


def _draw(engine: _Engine, block: _Block, j: int, t: int) -> _Round:
    """Step 1: round t, the j-th of its block."""
    n = block.tasks[:, j]
    target = engine.W[n] if engine.one else engine.W[engine.everyone, n]  # w_{n_t} of each row
    prepared = None if block.prepared is None else block.prepared[:, j]
    return _Round(t, j, n, target, block.Z[:, j], block.L[:, j], prepared, block.xbar[:, j], block.noise[:, j])


def _route(engine: _Engine, state: _State, now: _Round) -> None:
    """Step 2: the gate values of Eq. (1) and the router's choice (Eq. (2) for the paper's router)."""
    now.h = gate.gate_values(state.theta, now.xbar)
    now.m = engine.router.choose(now.h, now.noise, now.Z, now.L, now.target, state.expert_models)


def _change(engine: _Engine, now: _Round, models: np.ndarray) -> np.ndarray:
    """The change the round's data give models (R, d): Eq. (5), ``P_t (w_{n_t} - w)``, or gradient steps."""
    return engine.update.change(now.Z, now.L, now.prepared, now.target - models, engine.config.gradient_steps)


def _learn(engine: _Engine, state: _State, now: _Round) -> None:
    """Step 3: only the selected expert learns the task; its errors and closest truth follow."""
    everyone, m = engine.everyone, now.m
    selected = state.expert_models[everyone, m]
    now.change = _change(engine, now, selected)
    selected += now.change
    state.expert_models[everyone, m] = selected
    state.errors[everyone, m] = row = engine.errors_of(selected)
    state.closest[everyone, m] = np.argmin(row, axis=1)
    now.change_norm = np.sqrt(np.sum(now.change * now.change, axis=-1))


def _share(engine: _Engine, state: _State, now: _Round) -> None:
    """Step 4: once the gate is frozen, the selected expert's set (the experts closest to the
    same truth) shares the round (book/sharing.md); nothing with ``Config.sharing="none"``."""
    sharing = engine.config.sharing
    if sharing == "none":
        return
    everyone, m = engine.everyone, now.m
    in_set = (state.closest == state.closest[everyone, m][:, None]) & ~state.training[:, None]
    shared = experts.share_within_set(sharing, state.expert_models, in_set, m, lambda models: _change(engine, now, models))
    if shared.any():
        state.errors[shared] = engine.errors_of(state.expert_models[shared], shared)
        state.closest[shared] = np.argmin(state.errors[shared], axis=2)


def _tally(engine: _Engine, state: _State, now: _Round) -> None:
    """Step 5: F_t over the tasks i < t, then G_t over i <= t (and over the tasks after the drift)."""
    t, m, n, everyone, records = now.t, now.m, now.n, engine.everyone, state.records
    total_before = np.sum(state.learned * state.errors, axis=(1, 2))
    if t > 1:
        records["forgetting"][:, t - 1] = (total_before - state.error_when_learned) / (t - 1)
    state.learned[everyone, m, n] += 1
    current_error = state.errors[everyone, m, n]
    state.error_when_learned += current_error
    state.block["generalization"][:, now.j] = total_before / t + current_error / t
    drift = engine.config.drift_round
    if drift is not None and t > drift:
        state.learned_since_drift[everyone, m, n] += 1
        recent = np.sum(state.learned_since_drift * state.errors, axis=(1, 2))
        records["drift_generalization"][:, t - 1] = recent / (t - drift)


def _update_gate(engine: _Engine, state: _State, now: _Round) -> None:
    """Step 6: re-opening and termination checks, then Eq. (9) while the gate trains."""
    t, m, config, records = now.t, now.m, engine.config, state.records
    state.routed[engine.everyone, m] += 1
    state.reopen_memory, reopen = engine.reopening.update(
        state.reopen_memory, ~state.training, now.change_norm, config.reopen_threshold, config.reopen_patience
    )
    if reopen.any():  # explore again: every flag set, T1 rounds before the next check
        state.training |= reopen
        state.flags[reopen] = True
        state.check_after[reopen] = t + (engine.T1 if engine.one else engine.T1[reopen])
    state.flags, stop = engine.termination.update(state.flags, now.h, m, t, state.check_after, engine.Gamma)
    first = stop & state.training & (records["termination_round"] < 0)
    records["termination_round"][first] = t
    state.training &= ~stop
    pi = gate.softmax(now.h)
    grad = engine.locality(pi, m, now.change_norm) + engine.balance(pi, state.routed / t, engine.alpha, t)
    grad *= state.training[:, None]
    gate.gate_step(state.theta, grad, now.xbar, engine.eta, out=state.theta)  # Eq. (9)


def _record(state: _State, now: _Round) -> None:
    """The round's entries of the per-round records not written by the steps above (into the
    block's buffers: writing one column of an (R, T) record per round is slow)."""
    block, j = state.block, now.j
    block["tasks"][:, j] = now.n
    block["experts"][:, j] = now.m
    block["gate_values"][:, j] = now.h
    block["change_norm"][:, j] = now.change_norm
    block["closest_truth"][:, j] = state.closest
    block["gate_trained"][:, j] = state.training


def _flush(state: _State, start: int, length: int) -> None:
    """Copy a block of rounds from the buffers into the records."""
    for name, buffer in state.block.items():
        state.records[name][:, start:start + length] = buffer[:, :length]


def _run(batch: _Batch, rngs: list, progress: bool) -> dict:
    """Algorithm 1 for every row of the batch; returns the arrays of `RECORDS`."""
    engine = _Engine(batch, len(rngs))
    state = _initial_state(engine)
    bar = progress_bar(engine.T, progress)
    # Everything that does not depend on the state is prepared a block of rounds at a
    # time, the next block in a background thread while this one is simulated (numpy
    # releases the GIL there). Each replicate's generator is still used by one thread
    # at a time and in order, so the numbers are the same as without the thread.
    blocks = list(round_blocks(engine.T))
    prefetch = ThreadPoolExecutor(max_workers=1)
    pending = prefetch.submit(_prepare_block, engine, rngs, *blocks[0])
    try:
        for index, (start, length) in enumerate(blocks):
            block = pending.result()
            if index + 1 < len(blocks):
                pending = prefetch.submit(_prepare_block, engine, rngs, *blocks[index + 1])
            for j in range(length):
                now = _draw(engine, block, j, start + j + 1)
                _route(engine, state, now)
                _learn(engine, state, now)
                _share(engine, state, now)
                _tally(engine, state, now)
                _update_gate(engine, state, now)
                _record(state, now)
            _flush(state, start, length)
            bar.update(length)
    finally:
        bar.close()
        prefetch.shutdown(cancel_futures=True)
    return state.records
