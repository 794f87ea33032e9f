"""Algorithm 1: the linear MoE in continual learning, batched over Monte Carlo replicates.

`simulate` is the one entry point that chapters, the command line and tests use.
All state carries a leading replicate axis R, so one call simulates many seeds; a
plain per-replicate implementation lives in `moecl.reference` as the test oracle.

Each round t = 1..T (Algorithm 1):

1. draw the task n_t, its data X_t (Definition 1) and the routing noise;
2. route by Eq. (2) with the gate values of Eq. (1);
3. the selected expert learns the task by Eq. (5); the others stay put;
4. for t > T1 the termination rule inspects the gate values;
5. while the gate has not terminated, Theta takes the step of Eq. (9) on the
   locality loss Eq. (6) plus the load-balancing loss Eq. (7).

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
from dataclasses import dataclass, field

import numpy as np

from . import experts, gate
from .config import Config
from .progress import progress_bar
from .tasks import (
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


@dataclass
class SimulationResult:
    """Per-round records of R replicates of Algorithm 1 (replicate axis first).

    tasks (R, T): the ground truth n_t of each round. experts (R, T): the expert
    m_t that learned it (the routing history). forgetting (R, T): F_t (NaN at
    t = 1, where it is undefined). generalization (R, T): G_t. gate_values
    (R, T, M): h_m(X_t) at routing time. change_norm (R, T): ||w_t - w_{t-1}|| of
    the selected expert. closest_truth (R, T, M): index of the ground truth closest
    to each expert's model after the round. termination_round (R,): the round T2 at
    which the gate first stopped training (-1: never). drift_generalization (R, T): with
    ``Config.drift_round`` T_d, G_t restricted to the tasks that arrived after the drift,
    ``1/(t - T_d) sum_{T_d < i <= t} E_i(w_t^(m_i))`` (NaN up to T_d, and without drift).
    gate_trained (R, T): whether
    the gate took its step Eq. (9) in round t (it may train again after a re-opening,
    ``Config.reopen``). final_experts (R, M, d),
    final_theta (R, M, d): end state. pool: the ground truths and feature signals
    shared by all replicates. replicates: the replicate indices simulated.
    """

    config: Config
    seed: int
    replicates: np.ndarray
    pool: Pool
    tasks: np.ndarray
    experts: np.ndarray
    forgetting: np.ndarray
    generalization: np.ndarray
    gate_values: np.ndarray
    change_norm: np.ndarray
    closest_truth: np.ndarray
    termination_round: np.ndarray
    drift_generalization: np.ndarray
    gate_trained: np.ndarray
    final_experts: np.ndarray
    final_theta: np.ndarray
    wall_time: float = field(default=0.0, compare=False)

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
        return SimulationResult(
            config=self.config,
            seed=self.seed,
            replicates=self.replicates[pick],
            pool=self.pool,
            tasks=self.tasks[pick],
            experts=self.experts[pick],
            forgetting=self.forgetting[pick],
            generalization=self.generalization[pick],
            gate_values=self.gate_values[pick],
            change_norm=self.change_norm[pick],
            closest_truth=self.closest_truth[pick],
            termination_round=self.termination_round[pick],
            drift_generalization=self.drift_generalization[pick],
            gate_trained=self.gate_trained[pick],
            final_experts=self.final_experts[pick],
            final_theta=self.final_theta[pick],
            wall_time=self.wall_time,
        )


def simulate(
    config: Config,
    replicates=1,
    seed: int = 0,
    pool: Pool | tuple | None = None,
    progress: bool = False,
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

    Returns a `SimulationResult` with per-round arrays of leading shape (R, T).
    """
    if not isinstance(config, Config):
        raise ValueError(f"config must be a moecl.Config, got {type(config).__name__}")
    return _simulate_batch([config], replicates, seed, pool, progress)[0]


#: `Config` fields that may differ between the configurations of one `simulate_many`
#: call: scales that enter the computation as numbers. Every other field fixes a shape
#: or a mechanism and must be the same in all of them.
BATCHABLE_FIELDS = ("sigma0", "eta", "alpha", "lambda_", "Gamma", "T1", "beta", "sigma_t", "v_norm", "cluster_spread")


def simulate_many(configs, replicates=1, seed: int = 0, progress: bool = False) -> list[SimulationResult]:
    """Run several configurations of Algorithm 1 in one batched call (the regime map).

    The configurations may differ in the fields of `BATCHABLE_FIELDS` (sigma0, sigma_t,
    the gate constants, T1, ...) and must agree in all others. Configuration c simulates
    the same replicates of the same seed as ``simulate(configs[c], replicates, seed)``
    and gives the same numbers (its pool is drawn from the seed with its own sigma0),
    so runs of different configurations are paired by common random numbers; the rows
    of all configurations share each round's numpy calls, which is what makes a grid
    of small settings fast. Returns one `SimulationResult` per configuration.
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
    return _simulate_batch(configs, replicates, seed, None, progress)


def _simulate_batch(configs: list, replicates, seed: int, pool, progress: bool) -> list[SimulationResult]:
    indices = replicate_indices(replicates)
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
    records = _run(batch, rngs, progress)
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


def _run(batch: _Batch, rngs: list, progress: bool) -> dict:
    config = batch.config
    R, T, M, N, d = len(rngs), config.T, config.M, config.pool_size, config.d
    one = len(batch.configs) == 1
    # Per-row gate constants: plain numbers for one configuration, columns otherwise.
    column = (lambda value: value) if one else (lambda value: value[:, None])
    eta, alpha, Gamma = (column(batch.rows(name)) for name in ("eta", "alpha", "Gamma"))
    lambda_ = batch.rows("lambda_") if one else batch.rows("lambda_")[:, None, None]
    T1 = batch.rows("T1", dtype=np.int64)
    W = batch.pools[0].W if one else np.concatenate([np.broadcast_to(p.W, (s.stop - s.start, *p.W.shape))
                                                     for p, s in zip(batch.pools, batch.slices)])
    termination = gate.TERMINATION_RULES[config.termination]
    reopening = gate.REOPEN_RULES[config.reopen]
    balance = gate.BALANCE_LOSSES[config.balance_loss]  # Eq. (7) or the entropy bonus
    locality = gate.LOCALITY_LOSSES[config.locality_loss]  # Eq. (6), or none (an ablation)
    everyone = np.arange(R)

    expert_models = np.zeros((R, M, d))
    theta = np.zeros((R, M, d))
    # Model errors E(w) = ||w - w_n||^2, or Sigma-weighted: distances after scaling the
    # coordinates by sqrt(diag Sigma).
    scale = np.sqrt(feature_variances(d, config.anisotropy)) if config.error_metric == "sigma" else None
    W_err = [pool.W if scale is None else pool.W * scale for pool in batch.pools]
    W_sq = [np.sum(Wg * Wg, axis=1) for Wg in W_err]
    errors = np.empty((R, M, N))  # E_n(w^(m))
    closest = np.empty((R, M), dtype=np.int64)  # truth nearest to each expert
    for rows, norms in zip(batch.slices, W_sq):
        errors[rows] = norms
        closest[rows] = np.argmin(norms)
    learned = np.zeros((R, M, N))  # C[m, n]: tasks of truth n learned by expert m
    error_when_learned = np.zeros(R)  # sum_{i<=t} E_i(w_i^(m_i))
    routed = np.zeros((R, M))  # rounds routed to each expert so far
    flags = termination.initial_flags((R, M))
    training = np.ones(R, dtype=bool)
    # Termination checks start after round T1, or T1 rounds after a re-opening.
    check_after = T1 if one and config.reopen == "never" else np.broadcast_to(T1, (R,)).copy()
    # The re-opening rule's memory of a frozen gate's changes (strikes, or a window of them).
    strikes = reopening.initial_state(R, config)

    def error_rows(models, which=None):
        """E_n of the models (r, d) or (r, M, d) of every row, or of the rows of the mask
        ``which``, -> (r, N) or (r, M, N); each configuration's rows against its own pool."""
        models = models if scale is None else models * scale
        picked = np.arange(R) if which is None else np.flatnonzero(which)  # sorted row numbers
        values = np.empty((*models.shape[:-1], N))
        for g, rows in enumerate(batch.slices):  # contiguous rows: a view, as if it ran alone
            inside = slice(*np.searchsorted(picked, (rows.start, rows.stop)))
            part = models[inside]
            if len(part):
                flat = experts.squared_distances_fast(part.reshape(-1, d), W_err[g], W_sq[g])
                values[inside] = flat.reshape(*part.shape[:-1], N)
        return values

    out = {
        "tasks": np.empty((R, T), dtype=np.int64),
        "experts": np.empty((R, T), dtype=np.int64),
        "forgetting": np.full((R, T), np.nan),
        "generalization": np.empty((R, T)),
        "gate_values": np.empty((R, T, M)),
        "change_norm": np.empty((R, T)),
        "closest_truth": np.empty((R, T, M), dtype=np.int16),
        "termination_round": np.full(R, -1, dtype=np.int64),
        "gate_trained": np.empty((R, T), dtype=bool),
        "drift_generalization": np.full((R, T), np.nan),
    }
    drift = config.drift_round
    learned_since_drift = np.zeros((R, M, N)) if drift is not None else None
    bar = progress_bar(T, progress)
    # Everything that does not depend on the state is prepared a block of rounds at a
    # time, the next block in a background thread while this one is simulated (numpy
    # releases the GIL there). Each replicate's generator is still used by one thread
    # at a time and in order, so the numbers are the same as without the thread.
    blocks = list(round_blocks(T))
    prefetch = ThreadPoolExecutor(max_workers=1)
    pending = prefetch.submit(_prepare_block, batch, rngs, *blocks[0])
    try:
        for index, (start, length) in enumerate(blocks):
            draws, Z, xbar_block, factor_block, steps_block = pending.result()
            if index + 1 < len(blocks):
                pending = prefetch.submit(_prepare_block, batch, rngs, *blocks[index + 1])
            route_noise = lambda_ * draws.route_uniform
            for j in range(length):
                t = start + j + 1
                n = draws.tasks[:, j]
                target = W[n] if one else W[everyone, n]  # w_{n_t} of each row
                xbar = xbar_block[:, j]
                h = gate.gate_values(theta, xbar)  # Eq. (1)
                if config.router == "gate":
                    m = gate.route(h, route_noise[:, j])  # Eq. (2)
                else:  # least_change: the expert Eq. (5) would move least
                    norms = experts.change_norms(Z[:, j], factor_block[:, j], target[:, None, :] - expert_models)
                    m = np.argmin(norms, axis=1)

                # Eq. (5): only the selected expert learns the task,
                # w <- w + X (X^T X)^{-1} X^T (w_{n_t} - w) (or gradient steps towards it).
                if config.expert_update == "exact":
                    def learn(models, Zj=Z[:, j], Lj=factor_block[:, j], target=target):
                        return experts.projected_change(Zj, Lj, target - models)
                else:
                    def learn(models, Zj=Z[:, j], steps=steps_block[:, j], target=target):
                        return experts.gradient_change(Zj, target - models, config.gradient_steps, steps)
                selected = expert_models[everyone, m]
                change = learn(selected)
                selected += change
                expert_models[everyone, m] = selected
                errors[everyone, m] = row = error_rows(selected)
                closest[everyone, m] = np.argmin(row, axis=1)
                if config.sharing != "none":
                    # Issue 9: once the gate is frozen, the selected expert's set (the experts
                    # closest to the same truth) shares the round.
                    in_set = (closest == closest[everyone, m][:, None]) & ~training[:, None]
                    shared = experts.share_within_set(config.sharing, expert_models, in_set, m, learn)
                    if shared.any():
                        errors[shared] = error_rows(expert_models[shared], shared)
                        closest[shared] = np.argmin(errors[shared], axis=2)

                # Metrics: F_t over tasks i < t, then G_t over tasks i <= t.
                total_before = np.sum(learned * errors, axis=(1, 2))
                if t > 1:
                    out["forgetting"][:, t - 1] = (total_before - error_when_learned) / (t - 1)
                learned[everyone, m, n] += 1
                current_error = errors[everyone, m, n]
                error_when_learned += current_error
                out["generalization"][:, t - 1] = total_before / t + current_error / t
                if drift is not None and t > drift:
                    learned_since_drift[everyone, m, n] += 1
                    recent = np.sum(learned_since_drift * errors, axis=(1, 2))
                    out["drift_generalization"][:, t - 1] = recent / (t - drift)
                change_norm = np.sqrt(np.sum(change * change, axis=-1))

                # Gate: re-opening and termination checks, then Eq. (9) while training.
                routed[everyone, m] += 1
                strikes, reopen = reopening.update(
                    strikes, ~training, change_norm, config.reopen_threshold, config.reopen_patience
                )
                if reopen.any():  # explore again: every flag set, T1 rounds before the next check
                    training |= reopen
                    flags[reopen] = True
                    check_after[reopen] = t + (T1 if one else T1[reopen])
                flags, stop = termination.update(flags, h, m, t, check_after, Gamma)
                first = stop & training & (out["termination_round"] < 0)
                out["termination_round"][first] = t
                training &= ~stop
                out["gate_trained"][:, t - 1] = training
                pi = gate.softmax(h)
                grad = locality(pi, m, change_norm) + balance(pi, routed / t, alpha, t)
                grad *= training[:, None]
                gate.gate_step(theta, grad, xbar, eta, out=theta)  # Eq. (9)

                out["tasks"][:, t - 1] = n
                out["experts"][:, t - 1] = m
                out["gate_values"][:, t - 1] = h
                out["change_norm"][:, t - 1] = change_norm
                out["closest_truth"][:, t - 1] = closest
            bar.update(length)
    finally:
        bar.close()
        prefetch.shutdown(cancel_futures=True)
    out["final_experts"] = expert_models
    out["final_theta"] = theta
    return out


def _prepare_block(batch: _Batch, rngs: list, start: int, length: int):
    """Draws, samples Z = X^T (R, c, s, d), gate inputs (Eq. (1)), Gram factors of a block,
    and the gradient step sizes when the experts learn by gradient descent."""
    config = batch.config
    draws = draw_rounds(config, rngs, length, start)
    Z = draws.noise
    for each, pool, rows in zip(batch.configs, batch.pools, batch.slices):  # sigma_t, beta, V per configuration
        samples(each, pool.V, draws.tasks[rows], draws.signal_pos[rows], draws.noise[rows], out=Z[rows])
    xbar_block = np.sum(Z, axis=2)  # Eq. (1): sum of the columns of X_t
    factor_block = experts.gram_factor(Z)  # X_t^T X_t = L L^T
    steps_block = experts.gradient_step_size(Z) if config.expert_update == "gradient" else None
    return draws, Z, xbar_block, factor_block, steps_block

