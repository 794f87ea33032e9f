"""Task streams: the pool of ground truths, feature signals and task data (Section 3).

Every round draws a task index ``n_t`` uniformly from the pool and a data matrix
``X_t`` (d x s, columns are samples) whose labels are ``y_t = X_t^T w_{n_t}``.

Random streams
--------------
One experiment is seeded by one integer. ``numpy.random.SeedSequence(seed).spawn(2)``
gives a pool stream and a replicate stream; the replicate stream's ``spawn`` gives
one child per Monte Carlo replicate. A replicate draws its rounds in chunks of
`CHUNK` rounds, always in the same order (`draw_rounds`), so replicate k produces
the same numbers whether it runs alone or in a batch of any size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import Config

#: Rounds drawn per call to a replicate's generator (part of the stream's definition).
CHUNK = 32


@dataclass(frozen=True)
class Pool:
    """Ground truths ``W`` (N, d) and feature signals ``V`` (N, d) (Section 3)."""

    W: np.ndarray
    V: np.ndarray

    @property
    def S(self) -> float:
        """Mean squared norm of the ground truths, (1/N) sum_n ||w_n||^2."""
        return float(np.mean(np.sum(self.W**2, axis=1)))

    @property
    def D(self) -> float:
        """Mean squared model gap, (1/N^2) sum_{n,n'} ||w_n - w_n'||^2."""
        gaps = self.W[:, None, :] - self.W[None, :, :]
        return float(np.mean(np.sum(gaps**2, axis=-1)))


def seed_sequences(seed: int, replicates) -> tuple[np.random.SeedSequence, list]:
    """The pool's SeedSequence and one SeedSequence per requested replicate index."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    pool_ss, replicate_ss = np.random.SeedSequence(int(seed)).spawn(2)
    indices = replicate_indices(replicates)
    children = replicate_ss.spawn(int(indices.max()) + 1)
    return pool_ss, [children[k] for k in indices]


def replicate_indices(replicates) -> np.ndarray:
    """Normalise ``replicates`` (a count R, or explicit replicate indices) to indices."""
    if isinstance(replicates, (int, np.integer)) and not isinstance(replicates, bool):
        if replicates < 1:
            raise ValueError(f"replicates={replicates!r} must be at least 1")
        return np.arange(int(replicates))
    try:
        indices = np.asarray(list(replicates))
    except TypeError:
        raise ValueError(f"replicates={replicates!r} must be a count or a sequence of indices") from None
    if indices.ndim != 1 or indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"replicates={replicates!r} must be a count or a non-empty sequence of integers")
    if indices.min() < 0:
        raise ValueError(f"replicates={replicates!r} contains a negative index")
    return indices.astype(np.int64)


def make_pool(config: Config, rng: np.random.Generator) -> Pool:
    """Draw the pool (book choice, book/choices.md section 1).

    Without clusters ``w_n ~ N(0, sigma0^2 I_d)``. With ``K`` clusters, centres
    ``c_k ~ N(0, sigma0^2 I_d)`` and ``w_n = c_{n mod K} + cluster_spread * sigma0 * z``
    with ``z ~ N(0, I_d)``. Feature signals are orthogonal when ``N <= d`` (random
    orthonormal rows, scaled to norm ``v_norm``), random directions otherwise.
    """
    d, N = config.d, config.N
    if config.K is None:
        W = config.sigma0 * rng.standard_normal((N, d))
    else:
        centres = config.sigma0 * rng.standard_normal((config.K, d))
        spread = config.cluster_spread * config.sigma0 * rng.standard_normal((N, d))
        W = centres[cluster_of(config)] + spread
    G = rng.standard_normal((d, N))
    if N <= d:
        Q, R = np.linalg.qr(G)
        directions = (Q * np.sign(np.diag(R))).T
    else:
        directions = (G / np.linalg.norm(G, axis=0)).T
    V = config.v_norm * directions
    if config.drift_round is not None:
        W, V = _add_drift_truths(config, rng, W, G)
    return Pool(W=W, V=V)


def _add_drift_truths(config: Config, rng: np.random.Generator, W: np.ndarray, G: np.ndarray):
    """Append the ``drift_count`` truths that arrive at round ``drift_round`` (**book choice**).

    They are fresh draws ``N(0, sigma0^2 I_d)`` (with or without clusters), drawn after
    the original pool so that the first N truths are those of the run without drift;
    their feature signals continue the orthonormal system when ``N + drift_count <= d``.
    """
    k, d, N = config.drift_count, config.d, config.N
    W_new = config.sigma0 * rng.standard_normal((k, d))
    G_all = np.concatenate([G, rng.standard_normal((d, k))], axis=1)
    if N + k <= d:
        Q, R = np.linalg.qr(G_all)
        directions = (Q * np.sign(np.diag(R))).T
    else:
        directions = (G_all / np.linalg.norm(G_all, axis=0)).T
    V_old = config.v_norm * directions[:N]
    return np.concatenate([W, W_new]), np.concatenate([V_old, config.v_norm * directions[N:]])


def active_truths(config: Config, t) -> np.ndarray:
    """Indices into the pool of the N truths that tasks of round(s) t draw from.

    Before (and at) ``drift_round`` these are 0..N-1; afterwards truth n < drift_count is
    replaced by truth ``N + n``.
    """
    truths = np.arange(config.N)
    if config.drift_round is None or t <= config.drift_round:
        return truths
    truths[: config.drift_count] += config.N
    return truths


def cluster_of(config: Config) -> np.ndarray:
    """Cluster index of each ground truth: ``n mod K`` (``n`` itself without clusters)."""
    n = np.arange(config.N)
    return n if config.K is None else n % config.K


def check_pool(config: Config, pool: Pool) -> Pool:
    """Validate a user-given pool (shapes (N, d), finite values)."""
    if not isinstance(pool, Pool):
        try:
            W, V = pool
        except (TypeError, ValueError):
            raise ValueError("pool must be a moecl.Pool or a pair (W, V)") from None
        pool = Pool(W=np.asarray(W, dtype=float), V=np.asarray(V, dtype=float))
    for name in ("W", "V"):
        array = getattr(pool, name)
        if array.shape != (config.pool_size, config.d):
            what = "(N, d)" if config.pool_size == config.N else "(N + drift_count, d)"
            raise ValueError(
                f"pool.{name} has shape {array.shape}, expected {what} = ({config.pool_size}, {config.d})"
            )
        if not np.all(np.isfinite(array)):
            raise ValueError(f"pool.{name} contains non-finite values")
    return pool


@dataclass
class Rounds:
    """Random draws for a block of rounds, replicate axis first.

    tasks (R, c): ground-truth index n_t. signal_pos (R, c): column of X_t holding
    beta * v_{n_t}. noise (R, c, s, d): standard normal samples, one row per column
    of X_t (stored sample-major, so a sample's d coordinates are contiguous). route_uniform
    (R, c, M): Unif[0, 1) draws, scaled by lambda_ into the routing noise of Eq. (2).
    """

    tasks: np.ndarray
    signal_pos: np.ndarray
    noise: np.ndarray
    route_uniform: np.ndarray


def draw_rounds(config: Config, rngs: list, rounds: int, start: int = 0) -> Rounds:
    """Draw ``rounds`` rounds (rounds ``start + 1 ..``) for every replicate generator in ``rngs``.

    The order of draws inside one replicate's stream is fixed: task indices, signal
    positions, noise columns, routing uniforms. With drift, a task index drawn after
    ``drift_round`` is mapped to the truth that replaced it (`active_truths`), so the
    stream of draws is the same with and without drift.
    """
    R, d, s, M = len(rngs), config.d, config.s, config.M
    tasks = np.empty((R, rounds), dtype=np.int64)
    signal_pos = np.empty((R, rounds), dtype=np.int64)
    noise = np.empty((R, rounds, s, d))
    route_uniform = np.empty((R, rounds, M))
    for k, rng in enumerate(rngs):
        tasks[k] = rng.integers(0, config.N, size=rounds)
        signal_pos[k] = rng.integers(0, s, size=rounds)
        rng.standard_normal(out=noise[k])
        rng.random(out=route_uniform[k])
    if config.drift_round is not None:
        after = start + 1 + np.arange(rounds) > config.drift_round
        tasks[:, after] = active_truths(config, config.drift_round + 1)[tasks[:, after]]
    return Rounds(tasks, signal_pos, noise, route_uniform)


def round_blocks(T: int):
    """Yield (start, length) of the chunks that cover rounds 0..T-1."""
    for start in range(0, T, CHUNK):
        yield start, min(CHUNK, T - start)


def feature_matrices(config: Config, V: np.ndarray, tasks, signal_pos, noise) -> np.ndarray:
    """Task data X_t (..., d, s) from the draws (Definition 1, or isotropic).

    Definition 1: column ``signal_pos`` is ``beta * v_{n_t}``, the others are
    ``sigma_t`` times the standard normal draws. Isotropic: every column is
    ``sigma_t`` times its draw (the signal position is drawn but unused).
    The result is a transposed view of the C-contiguous samples array (..., s, d).
    """
    return np.swapaxes(samples(config, V, tasks, signal_pos, noise), -1, -2)


def feature_variances(d: int, anisotropy: float = 1.0) -> np.ndarray:
    """The diagonal of the feature covariance Sigma (**book choice**, book/similarity.md and book/choices.md section 9).

    Variances fall geometrically along the coordinates from the largest to the smallest,
    ``anisotropy`` (``kappa >= 1``) being their ratio, and are normalised to mean 1 so
    that ``trace(Sigma) = d`` as for ``Sigma = I`` (``anisotropy = 1``).
    """
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"d={d!r} must be a positive integer")
    kappa = float(anisotropy)
    if not np.isfinite(kappa) or kappa < 1.0:
        raise ValueError(f"anisotropy={anisotropy!r} must be a finite number at least 1")
    exponents = np.arange(d) / max(d - 1, 1)
    variances = kappa ** -exponents
    return variances * (d / variances.sum())


def samples(config: Config, V: np.ndarray, tasks, signal_pos, noise, out=None) -> np.ndarray:
    """The samples of X_t as rows, ``X_t^T`` (..., s, d); see `feature_matrices`.

    Noise columns are ``sigma_t`` times the standard normal draws, scaled per coordinate
    by ``sqrt(diag(Sigma))`` when ``config.anisotropy > 1`` (`feature_variances`).
    ``out`` may be ``noise`` itself to build the samples in place.
    """
    Z = np.multiply(noise, config.sigma_t, out=out)
    if config.anisotropy != 1.0:
        Z *= np.sqrt(feature_variances(config.d, config.anisotropy))
    if config.features == "definition1":
        tasks = np.asarray(tasks)
        lead = np.indices(tasks.shape, sparse=True)
        Z[(*lead, np.asarray(signal_pos))] = config.beta * V[tasks]
    return Z
