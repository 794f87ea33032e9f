"""Router dynamics of a simulated run: expert sets, gate gaps, load within sets (Propositions 1-3).

The paper describes the router in terms of *expert sets*: ``M_n``, the experts whose
model is close to the ground truth ``w_n`` (Proposition 1). The functions here read
them off a `moecl.SimulationResult` and measure what Propositions 1-3 talk about:

* `expert_sets`: ``M_n`` at a round, as the truth each expert's model is closest to;
* `set_margin`: the gate gap between the task's own expert set and the rest,
  ``max_{m in M_{n_t}} h_m(X_t) - max_{m not in M_{n_t}} h_m(X_t)`` (routing is
  decided by the gate, not by the noise of Eq. (2), when it exceeds ``lambda``);
* `within_set_spread`: the spread of the gate values inside the task's own set;
* `gate_range`: ``max_m h_m(X_t) - min_m h_m(X_t)``, the spread of all gate values,
  which the load-balancing loss Eq. (7) keeps shrinking while the gate trains
  (Proposition 2);
* `set_agreement`: how many experts already belong to their final set at a round;
* `within_set_load`: a chi-square test of the balanced load of Proposition 3;
* `purity_windows`: routing purity (`moecl.metrics.routing_purity`) over equal windows,
  aligned to the first round or to the last;
* `replay_gate_inputs`: the gate inputs ``xbar_t`` of Eq. (1) of one replicate,
  regenerated from its random stream (the engine does not store them).

All arrays carry the replicate axis first, like `SimulationResult`.
"""

from __future__ import annotations

import numpy as np

from .metrics import routing_purity
from .tasks import draw_rounds, round_blocks, samples, seed_sequences


def _check_round(name: str, t, T: int) -> int:
    if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 1 <= t <= T:
        raise ValueError(f"{name}={t!r} must be a round between 1 and T={T}")
    return int(t)


def expert_sets(result, t: int | None = None) -> np.ndarray:
    """The expert sets at round t (default T) as labels (R, M): the truth n each expert serves.

    Expert m belongs to ``M_n`` when its model after round t is closer to ``w_n`` than
    to any other ground truth (Proposition 1's expert sets, read off
    ``SimulationResult.closest_truth``).
    """
    T = result.config.T
    t = T if t is None else _check_round("t", t, T)
    return np.asarray(result.closest_truth[:, t - 1], dtype=np.int64)


def set_agreement(result, t: int, reference: int | None = None) -> np.ndarray:
    """Share of experts (R,) whose expert set at round t is already their set at ``reference`` (default T)."""
    return np.mean(expert_sets(result, t) == expert_sets(result, reference), axis=-1)


def _sets_per_round(result, sets_at):
    h = result.gate_values
    if sets_at is None:
        return np.asarray(result.closest_truth, dtype=np.int64)  # (R, T, M): sets of each round
    return np.broadcast_to(expert_sets(result, sets_at)[:, None, :], h.shape)


def set_margin(result, sets_at: int | None = None) -> np.ndarray:
    """Gate gap between the task's expert set and the other experts, (R, T).

    ``max_{m in M_{n_t}} h_m(X_t) - max_{m not in M_{n_t}} h_m(X_t)`` with the gate
    values of Eq. (1) at routing time. The sets are those after each round t
    (``sets_at=None``) or those of the fixed round ``sets_at``. NaN where ``M_{n_t}``
    is empty or holds every expert. A margin above ``lambda`` routes the task into
    its set whatever the noise of Eq. (2); below ``-lambda`` never; in between the
    routing noise decides.
    """
    h = result.gate_values
    inside = _sets_per_round(result, sets_at) == result.tasks[..., None]
    best_in = np.where(inside, h, -np.inf).max(axis=-1)
    best_out = np.where(~inside, h, -np.inf).max(axis=-1)
    margin = best_in - best_out
    margin[~np.isfinite(margin)] = np.nan
    return margin


def within_set_spread(result, sets_at: int | None = None) -> np.ndarray:
    """Spread of the gate values inside the task's expert set, (R, T).

    ``max_{m in M_{n_t}} h_m(X_t) - min_{m in M_{n_t}} h_m(X_t)``, with the sets of
    each round (``sets_at=None``) or of round ``sets_at``; NaN where ``M_{n_t}`` has
    fewer than two experts. Balanced load within a set (Proposition 3) needs this
    spread to stay below the routing noise ``lambda`` of Eq. (2).
    """
    h = result.gate_values
    inside = _sets_per_round(result, sets_at) == result.tasks[..., None]
    spread = np.where(inside, h, -np.inf).max(axis=-1) - np.where(inside, h, np.inf).min(axis=-1)
    spread[np.sum(inside, axis=-1) < 2] = np.nan
    return spread


def gate_range(result) -> np.ndarray:
    """Spread of the gate values, ``max_m h_m(X_t) - min_m h_m(X_t)`` (R, T)."""
    h = result.gate_values
    return h.max(axis=-1) - h.min(axis=-1)


def within_set_load(result, start: int, end: int | None = None, sets_at: int | None = None,
                    min_count: int = 10):
    """Chi-square test of balanced load within expert sets over rounds ``start..end`` (Proposition 3).

    For every replicate and truth n whose set ``M_n`` (at round ``sets_at``, default
    ``end``) has at least two experts, count how the tasks of truth n that were routed
    into ``M_n`` split among its experts, and compare with the uniform split
    ``1/|M_n|`` of Proposition 3 by Pearson's statistic
    ``sum_m (c_m - c/|M_n|)^2 / (c/|M_n|)`` with ``|M_n| - 1`` degrees of freedom.
    Sets with fewer than ``min_count`` such tasks are skipped.

    Returns (chi2, dof, top_share), each (R,): the statistic and degrees of freedom
    summed over the truths of each replicate, and the mean over those truths of
    ``|M_n|`` times the largest expert's share (1 for a perfectly balanced split).
    Under balanced routing ``chi2 / dof`` is close to 1 (its mean is exactly 1).
    """
    T = result.config.T
    end = T if end is None else _check_round("end", end, T)
    start = _check_round("start", start, end)
    sets_at = end if sets_at is None else sets_at
    sets = expert_sets(result, sets_at)
    R = sets.shape[0]
    chi2, dof, top = np.zeros(R), np.zeros(R, dtype=np.int64), np.full(R, np.nan)
    for k in range(R):
        tasks = result.tasks[k, start - 1:end]
        chosen = result.experts[k, start - 1:end]
        shares = []
        for n in range(result.config.N):
            members = np.flatnonzero(sets[k] == n)
            if members.size < 2:
                continue
            counts = np.array([np.sum((tasks == n) & (chosen == m)) for m in members])
            total = counts.sum()
            if total < min_count:
                continue
            expected = total / members.size
            chi2[k] += np.sum((counts - expected) ** 2 / expected)
            dof[k] += members.size - 1
            shares.append(members.size * counts.max() / total)
        if shares:
            top[k] = np.mean(shares)
    return chi2, dof, top


def purity_windows(result, window: int, align: str = "start", count: int | None = None):
    """Routing purity over consecutive windows of ``window`` rounds (`moecl.metrics.routing_purity`).

    align: ``"start"``: the windows are rounds 1..L, L+1..2L, ... (ends L, 2L, ...), and
    rounds after the last whole window are left out; ``"end"``: the last window ends at
    round T, and rounds before the first whole window are left out. count: at most this
    many windows (``None``: all that fit), the first ones for ``"start"``, the last ones for
    ``"end"``. Each window's expert sets are those of its last round.

    Returns (ends, purity, random): the last round of each window (K,), and the
    purity and the purity of uniformly random routing per replicate and window (R, K).
    """
    T = result.config.T
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or not 1 <= window <= T:
        raise ValueError(f"window={window!r} must be an integer between 1 and T={T}")
    if align not in ("start", "end"):
        raise ValueError(f"align={align!r} is not one of ('start', 'end')")
    fit = T // window
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"count={count!r} must be a positive integer")
        fit = min(fit, int(count))
    if align == "start":
        ends = window * np.arange(1, fit + 1)
    else:
        ends = T - window * np.arange(fit - 1, -1, -1)
    R = result.tasks.shape[0]
    purity, random = np.empty((R, ends.size)), np.empty((R, ends.size))
    for j, end in enumerate(ends):
        purity[:, j], random[:, j] = routing_purity(result, window, end=int(end), per_replicate=True)
    return ends, purity, random


def replay_gate_inputs(result, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gate inputs ``xbar_t`` (T, d) (Eq. (1)) and tasks (T,) of the k-th replicate of ``result``.

    `moecl.simulate` does not store the task data; they are regenerated here from
    the replicate's random stream, which `moecl.tasks` defines (the same stream that
    `moecl.reference.simulate_one` replays).
    """
    R = result.tasks.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < R:
        raise ValueError(f"k={k!r} must be a replicate position between 0 and {R - 1}")
    config = result.config
    _, (stream,) = seed_sequences(result.seed, [int(result.replicates[k])])
    rng = np.random.default_rng(stream)
    xbar, tasks = np.empty((config.T, config.d)), np.empty(config.T, dtype=np.int64)
    for start, length in round_blocks(config.T):
        draws = draw_rounds(config, [rng], length, start)
        Z = samples(config, result.pool.V, draws.tasks, draws.signal_pos, draws.noise)
        xbar[start:start + length] = Z[0].sum(axis=1)
        tasks[start:start + length] = draws.tasks[0]
    return xbar, tasks
