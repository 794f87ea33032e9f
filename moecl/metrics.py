"""Summaries of simulated runs: Monte Carlo means with standard errors, routing purity.

The per-round metrics of the paper (forgetting F_t, generalization error G_t, load
f_t^(m)) are computed by the engine (`moecl.algorithm`); this module summarises them
across replicates.
"""

from __future__ import annotations

import warnings

import numpy as np

#: Two-sided 95% normal quantile, for confidence bands of Monte Carlo means.
Z95 = 1.959963984540054


def mean_se(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean over replicates and its standard error, ignoring NaN.

    Points with no finite value (F_1, which is undefined) give NaN.
    """
    values = np.asarray(values, dtype=float)
    if values.shape[axis] < 2:
        raise ValueError(f"a standard error needs at least two replicates, got {values.shape[axis]}")
    count = np.sum(~np.isnan(values), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points
        mean = np.nanmean(values, axis=axis)
        se = np.nanstd(values, axis=axis, ddof=1) / np.sqrt(count)
    return mean, se


def z_score(estimate: float, se: float, expected: float) -> float:
    """(estimate - expected) / se: how many standard errors a Monte Carlo mean is off."""
    if not se > 0:
        raise ValueError(f"se={se!r} must be positive")
    return float((estimate - expected) / se)


def routing_purity(result, window: int, end: int | None = None, per_replicate: bool = False):
    """Share of the rounds ``end - window + 1 .. end`` routed to an expert of the task's own expert set.

    The expert set M_n of truth n is the set of experts whose model is closest to
    w_n at round ``end`` (`SimulationResult.closest_truth`; default ``end = T``).
    Returns (purity, random): the observed share and the share that uniformly
    random routing would reach over the same rounds, ``mean_t |M_{n_t}| / M``;
    as floats averaged over replicates, or as (R,) arrays with ``per_replicate``.
    Compare windows of equal length only: short windows inflate purity, because
    the sets are read off at the window's end.
    """
    T, M = result.config.T, result.config.M
    end = T if end is None else end
    if not 1 <= end <= T:
        raise ValueError(f"end={end!r} must be between 1 and T={T}")
    if not 1 <= window <= end:
        raise ValueError(f"window={window!r} must be between 1 and end={end}")
    rounds = slice(end - window, end)
    sets = result.closest_truth[:, end - 1]  # (R, M): truth each expert serves
    tasks = result.tasks[:, rounds]
    chosen = result.experts[:, rounds]
    own = np.take_along_axis(sets, chosen, axis=1) == tasks
    set_sizes = np.sum(sets[:, None, :] == tasks[:, :, None], axis=-1)
    purity, random = own.mean(axis=1), np.mean(set_sizes / M, axis=1)
    if per_replicate:
        return purity, random
    return float(purity.mean()), float(random.mean())


# --------------------------------------------------------------------------- deep runs


def task_errors(table: np.ndarray, tasks: np.ndarray, experts: np.ndarray) -> np.ndarray:
    """``E[t, i]``: the error of task i (type n_i, expert m_i) after round t, (T, T).

    ``table`` (T, M, N) holds each expert's error on each task type after each round.
    """
    return table[:, np.asarray(experts), np.asarray(tasks)]


def forgetting_and_generalization(table: np.ndarray, tasks: np.ndarray, experts: np.ndarray):
    """The paper's F_t and G_t (Section 4) from a (T, M, N) table of test errors.

    ``F_t = 1/(t-1) sum_{i<t} [E_i(w_t^(m_i)) - E_i(w_i^(m_i))]`` (NaN at t = 1) and
    ``G_t = 1/t sum_{i<=t} E_i(w_t^(m_i))``, with E_i the test loss of task i's type.
    """
    E = task_errors(table, tasks, experts)
    T = E.shape[0]
    below = np.tril(np.ones((T, T), dtype=bool))  # i <= t
    strictly = np.tril(np.ones((T, T), dtype=bool), k=-1)  # i < t
    rounds = np.arange(1, T + 1)
    generalization = np.sum(E * below, axis=1) / rounds
    learned = np.diag(E)
    forgetting = np.full(T, np.nan)
    forgetting[1:] = (np.sum((E - learned) * strictly, axis=1) / (rounds - 1).clip(min=1))[1:]
    return forgetting, generalization


def accuracy_matrix(accuracy: np.ndarray, tasks: np.ndarray, experts: np.ndarray) -> np.ndarray:
    """``R[t, i]``: accuracy on task i after round t (the continual-learning literature's matrix), (T, T).

    Entries with i > t (tasks not seen yet) are NaN.
    """
    R = task_errors(accuracy, tasks, experts).astype(float)
    R[np.triu_indices(R.shape[0], k=1)] = np.nan
    return R


def average_accuracy(R: np.ndarray) -> float:
    """``A_T = 1/T sum_i R[T, i]``: mean final accuracy over all tasks seen."""
    return float(np.mean(R[-1]))


def backward_transfer(R: np.ndarray) -> float:
    """``BWT = 1/(T-1) sum_{i<T} (R[T, i] - R[i, i])`` (Lopez-Paz and Ranzato, 2017)."""
    T = R.shape[0]
    if T < 2:
        raise ValueError(f"backward transfer needs at least two tasks, got T={T}")
    return float(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


def accuracy_forgetting(R: np.ndarray) -> float:
    """``1/(T-1) sum_{i<T} (R[i, i] - R[T, i])``: accuracy just after learning a task minus its final accuracy.

    Averaged over every task but the last; it equals ``-backward_transfer(R)``.
    """
    return -backward_transfer(R)


def routing_concentration(tasks: np.ndarray, experts: np.ndarray, num_tasks: int) -> float:
    """Share of each task type's rounds that go to its most used expert, averaged over the types seen.

    It measures how deterministic the routing of each type is, not specialisation: it is 1
    for one network (every type on expert 0) and whenever a frozen gate sends each type to
    one expert, even if all types share that expert. `specialisation_score` is the measure
    that tells the two apart. About 1/M when routing ignores the task. ``tasks`` and
    ``experts`` are the routing history of one run.
    """
    tasks, experts = np.asarray(tasks), np.asarray(experts)
    if tasks.shape != experts.shape or tasks.ndim != 1:
        raise ValueError(f"tasks {tasks.shape} and experts {experts.shape} must be 1-d and of one length")
    shares = []
    for n in range(num_tasks):
        routed = experts[tasks == n]
        if routed.size:
            shares.append(np.bincount(routed).max() / routed.size)
    if not shares:
        raise ValueError("no rounds to measure routing concentration on")
    return float(np.mean(shares))


def routing_counts(tasks: np.ndarray, experts: np.ndarray, num_tasks: int, num_experts: int) -> np.ndarray:
    """The task-type x expert count matrix (N, M) of a routing history (book/deep.md).

    Entry (n, m) counts the rounds of type n routed to expert m; ``tasks`` and ``experts``
    are 1-d of one length (a window of rounds, e.g. those after termination).
    """
    tasks, experts = np.asarray(tasks), np.asarray(experts)
    if tasks.shape != experts.shape or tasks.ndim != 1:
        raise ValueError(f"tasks {tasks.shape} and experts {experts.shape} must be 1-d and of one length")
    for name, values, bound in (("tasks", tasks, num_tasks), ("experts", experts, num_experts)):
        if values.size and (values.min() < 0 or values.max() >= bound):
            raise ValueError(f"{name} must lie in [0, {bound}), got values in [{values.min()}, {values.max()}]")
    counts = np.zeros((num_tasks, num_experts), dtype=np.int64)
    np.add.at(counts, (tasks.astype(np.int64), experts.astype(np.int64)), 1)
    return counts


def specialisation_score(counts: np.ndarray) -> float:
    """How far the experts divide the task types between them: I(type; expert) / H(type).

    The mutual information between a round's task type and its expert (the plug-in estimate
    from the count matrix of `routing_counts`), over the entropy of the types. It is 0 for
    one network (one expert: I = 0) and for any routing independent of the task, and 1
    exactly when no expert serves two types (H(type | expert) = 0): the types are served
    by disjoint expert sets. A two-way split of N types scores log 2 / log N for balanced
    types. Finite samples bias the plug-in estimate upwards: compare with
    `specialisation_chance`, the score of the same loads with the task ignored.
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or np.any(counts < 0):
        raise ValueError(f"counts must be a non-negative (types, experts) matrix, got shape {counts.shape}")
    total = counts.sum()
    if total == 0:
        raise ValueError("no rounds to measure specialisation on")
    joint = counts / total
    types, experts = joint.sum(axis=1), joint.sum(axis=0)
    h_type = -np.sum(types[types > 0] * np.log(types[types > 0]))
    if h_type == 0:
        raise ValueError("one task type only: specialisation between types is undefined")
    seen = joint > 0
    information = np.sum(joint[seen] * np.log(joint[seen] / np.outer(types, experts)[seen]))
    return float(min(max(information / h_type, 0.0), 1.0))


def specialisation_chance(tasks: np.ndarray, experts: np.ndarray, num_tasks: int, num_experts: int,
                          permutations: int = 200, seed: int = 0) -> float:
    """The mean `specialisation_score` of the same routing with the experts shuffled across rounds:
    the score that routing ignoring the task reaches by chance with the same loads and rounds."""
    rng = np.random.default_rng(seed)
    experts = np.asarray(experts)
    scores = [specialisation_score(routing_counts(tasks, rng.permutation(experts), num_tasks, num_experts))
              for _ in range(permutations)]
    return float(np.mean(scores))
