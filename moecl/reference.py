"""A plain, one-replicate-at-a-time implementation of Algorithm 1.

This is the test oracle for `moecl.simulate` and the baseline of the benchmark. It
is written the way a researcher would write it first: a loop over rounds, numpy
per round, metrics computed straight from their definitions (Section 4 of the paper)
over the history of tasks, gate gradients written out from Eq. (6)-(9). It shares
only the random stream (`moecl.tasks`) with the batched engine, so both see the
same tasks, data and routing noise.
"""

from __future__ import annotations

import numpy as np

from .config import Config
from .tasks import (
    Pool,
    check_pool,
    draw_rounds,
    feature_matrices,
    feature_variances,
    make_pool,
    round_blocks,
    seed_sequences,
)


def simulate_one(config: Config, seed: int = 0, replicate: int = 0, pool: Pool | None = None) -> dict:
    """Run replicate ``replicate`` of Algorithm 1 alone; returns per-round arrays of shape (T, ...)."""
    pool_ss, (replicate_ss,) = seed_sequences(seed, [replicate])
    pool = make_pool(config, np.random.default_rng(pool_ss)) if pool is None else check_pool(config, pool)
    rng = np.random.default_rng(replicate_ss)
    W, V = pool.W, pool.V
    T, M, d = config.T, config.M, config.d

    experts = np.zeros((M, d))
    theta = np.zeros((M, d))
    counts = np.zeros(M)
    flags = np.ones(M, dtype=bool)
    training = True
    termination_round = -1
    first_check = config.T1  # termination is checked in rounds t > first_check
    strikes = 0  # re-opening "locality": consecutive large changes of the frozen gate
    frozen_changes = []  # re-opening "window": change norms since the gate froze
    weights = feature_variances(d, config.anisotropy) if config.error_metric == "sigma" else np.ones(d)

    def error(w, n):  # E_n(w): Euclidean, or weighted by the feature variances
        return float(np.sum(weights * (w - W[n]) ** 2))

    def closest(w):
        return int(np.argmin([error(w, n) for n in range(len(W))]))
    task_history, expert_history, error_when_learned = [], [], []
    out = {
        "tasks": np.zeros(T, dtype=np.int64),
        "experts": np.zeros(T, dtype=np.int64),
        "forgetting": np.full(T, np.nan),
        "generalization": np.zeros(T),
        "gate_values": np.zeros((T, M)),
        "change_norm": np.zeros(T),
        "closest_truth": np.zeros((T, M), dtype=np.int64),
        "gate_trained": np.zeros(T, dtype=bool),
        "drift_generalization": np.full(T, np.nan),
    }
    for start, length in round_blocks(T):
        draws = draw_rounds(config, [rng], length, start)
        for j in range(length):
            t = start + j + 1
            n = int(draws.tasks[0, j])
            X = feature_matrices(config, V, draws.tasks[0, j], draws.signal_pos[0, j], draws.noise[0, j])
            y = X.T @ W[n]

            # Eq. (1)-(2): gate values and noisy top-1 routing.
            xbar = X.sum(axis=1)
            h = theta @ xbar
            if config.router == "gate":
                m = int(np.argmax(h + config.lambda_ * draws.route_uniform[0, j]))
            else:  # least_change: the expert whose Eq. (5) change would be smallest
                sizes = [np.linalg.norm(X @ np.linalg.solve(X.T @ X, y - X.T @ w)) for w in experts]
                m = int(np.argmin(sizes))

            # Eq. (5): minimum-norm update of the selected expert (or gradient steps).
            def learn(old):
                if config.expert_update == "exact":
                    return old + X @ np.linalg.solve(X.T @ X, y - X.T @ old)
                step = 1.0 / np.linalg.eigvalsh(X.T @ X).max()
                w = old.copy()
                for _ in range(config.gradient_steps):
                    w = w - step * X @ (X.T @ w - y)
                return w

            old = experts[m].copy()
            experts[m] = learn(old)
            change_norm = np.linalg.norm(experts[m] - old)

            # Sharing within the expert set once the gate has terminated (book/sharing.md).
            if config.sharing != "none" and not training:
                own = closest(experts[m])
                members = [k for k in range(M) if closest(experts[k]) == own]
                if len(members) > 1:
                    if config.sharing == "update":
                        for k in members:
                            if k != m:
                                experts[k] = learn(experts[k])
                    else:
                        experts[members] = np.mean(experts[members], axis=0)

            # Metrics from their definitions.
            task_history.append(n)
            expert_history.append(m)
            error_when_learned.append(error(experts[m], n))
            now = np.sum(weights * (experts[expert_history] - W[task_history]) ** 2, axis=1)
            if t > 1:
                out["forgetting"][t - 1] = np.mean(now[:-1] - np.array(error_when_learned[:-1]))
            out["generalization"][t - 1] = np.mean(now)
            if config.drift_round is not None and t > config.drift_round:
                out["drift_generalization"][t - 1] = np.mean(now[config.drift_round:])

            # Re-opening and termination checks (book choices), then the gate step Eq. (9).
            counts[m] += 1
            reopen = False
            if config.reopen == "locality" and not training:
                strikes = strikes + 1 if change_norm > config.reopen_threshold else 0
                reopen = strikes >= config.reopen_patience
            elif config.reopen == "window" and not training:
                # mean change of the last k rounds of the frozen gate above the threshold
                frozen_changes.append(change_norm)
                k = config.reopen_patience
                reopen = len(frozen_changes) >= k and np.mean(frozen_changes[-k:]) > config.reopen_threshold
            elif config.reopen == "at-drift" and not training:  # told the drift round
                reopen = config.drift_round is not None and t == config.drift_round + 1
            else:
                strikes, frozen_changes = 0, []
            if reopen:
                training, strikes, frozen_changes, first_check = True, 0, [], t + config.T1
                flags[:] = True
            if config.termination == "gap" and t > first_check and training:
                for k in range(M):
                    if abs(h[k] - h[m]) < config.Gamma:
                        flags[k] = False
                if not flags.any():
                    training = False
                    if termination_round < 0:
                        termination_round = t
            out["gate_trained"][t - 1] = training
            if training:
                pi = np.exp(h - h.max())
                pi /= pi.sum()
                f = counts / t
                grad = np.zeros((M, d))
                for k in range(M):
                    # d pi_j / d theta_k = pi_j (1[j = k] - pi_k) xbar
                    d_loc = change_norm * pi[m] * ((k == m) - pi[k]) if config.locality_loss == "change" else 0.0
                    if config.balance_loss == "load_balance":
                        d_aux = config.alpha * M / t * sum(f[j] * pi[j] * ((j == k) - pi[k]) for j in range(M))
                    else:  # entropy bonus alpha sum_j pi_j log pi_j
                        d_aux = config.alpha * sum((np.log(pi[j]) + 1) * pi[j] * ((j == k) - pi[k]) for j in range(M))
                    grad[k] = (d_loc + d_aux) * xbar
                theta = theta - config.eta * grad

            out["tasks"][t - 1] = n
            out["experts"][t - 1] = m
            out["gate_values"][t - 1] = h
            out["change_norm"][t - 1] = change_norm
            out["closest_truth"][t - 1] = np.argmin(np.sum(weights * (experts[:, None] - W[None]) ** 2, axis=-1), axis=1)
    out["termination_round"] = termination_round
    out["final_experts"] = experts
    out["final_theta"] = theta
    return out


def engine_agreement(config: Config, replicates: int = 3, seed: int = 0) -> dict:
    """How closely the batched engine `moecl.simulate` follows this loop (book/setting.md, the
    findings' first row): replicates 0..R-1 of both, record by record.

    Returns ``replicates``, ``rounds``, ``integer_records`` and ``integer_equal`` (how many
    integer or boolean records, routing and tasks included, agree element for element),
    ``routing_agreement`` (the share of rounds with the same expert) and ``max_relative``
    (the largest difference of a floating-point record, relative to that record's largest
    magnitude), with ``worst`` the record it occurs in.
    """
    from .simulation import simulate

    result = simulate(config, replicates=replicates, seed=seed)
    integer_records = integer_equal = 0
    routing_same = 0
    max_relative, worst = 0.0, ""
    for k in range(replicates):
        loop = simulate_one(config, seed=seed, replicate=k)
        for name, theirs in loop.items():
            mine, theirs = np.asarray(getattr(result, name))[k], np.asarray(theirs)
            if np.issubdtype(theirs.dtype, np.floating):
                finite = np.isfinite(theirs)
                scale = float(np.max(np.abs(theirs[finite]))) if finite.any() else 0.0
                if not np.array_equal(finite, np.isfinite(mine)):
                    gap = float("inf")  # NaN (undefined before a truth is seen) in one run only
                else:
                    gap = float(np.max(np.abs(mine[finite] - theirs[finite]))) / scale if scale > 0 else 0.0
                if gap > max_relative:
                    max_relative, worst = gap, name
            else:
                integer_records += 1
                integer_equal += int(np.array_equal(mine, theirs))
        routing_same += int(np.sum(np.asarray(result.experts)[k] == loop["experts"]))
    return {"replicates": replicates, "rounds": config.T, "integer_records": integer_records,
            "integer_equal": integer_equal, "routing_agreement": routing_same / (replicates * config.T),
            "max_relative": max_relative, "worst": worst}
