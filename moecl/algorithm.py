"""Algorithm 1: the linear MoE in continual learning, batched over Monte Carlo replicates.

`simulate_batch` runs one batch in this process; the entry points that chapters, the command
line and tests use, `moecl.simulate` and `moecl.simulate_many`, live above it and the sweep
(`moecl.simulation`). All state carries a leading replicate axis R, so one call simulates many seeds; a
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

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import experts, gate, limits
from .config import Config
from .progress import progress_bar
from .records import BATCHABLE_FIELDS, RECORDS, Record, SimulationResult, allocate_records, record_bytes_per_round
from .tasks import (
    CHUNK,
    check_pool,
    draw_rounds,
    feature_variances,
    make_pool,
    replicate_indices,
    round_blocks,
    samples,
    seed_sequences,
)

# The records are declared in `moecl.records`; these names stay importable from here.
__all__ = ["BATCHABLE_FIELDS", "RECORDS", "Record", "SimulationResult", "allocate_records", "record_bytes_per_round",
           "simulate_batch"]


def simulate_batch(configs: list, replicates, seed: int, pool=None, progress: bool = False) -> list[SimulationResult]:
    """Algorithm 1 for every configuration of ``configs`` (one batchable group, checked by the caller,
    `moecl.simulation.simulate_many`) times the replicates, in this process, in one batch."""
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
