"""Task similarity beyond Euclidean gaps: anisotropic features (book chapter: similarity).

The paper measures how similar two tasks are by the Euclidean gap ``||w_n - w_n'||``
between their ground truths. When the features have a covariance ``Sigma`` other than
``I`` (`moecl.tasks.feature_variances`: ``Sigma = diag(sigma_1, ..., sigma_d)`` with
variances falling geometrically by the ratio ``kappa`` and mean 1), the test error of
a model ``w`` on task n, on fresh inputs ``x ~ N(0, sigma_t^2 Sigma)``, is
``sigma_t^2`` times the **Sigma-weighted** error

    E_n(w) = (w - w_n)^T Sigma (w - w_n)                                     (eq-sim-error)

(`Config(error_metric="sigma")`). This module gives the exact expectations of the
single expert's forgetting and generalization error under that metric, and of the
forgetting one task suffers when another is learned.

Projector moments (book choice: Monte Carlo)
-------------------------------------------
The expert update Eq. (5) is ``w_t = (I - P_t) w_{t-1} + P_t w_{n_t}`` with ``P_t``
the orthogonal projector onto the span of ``X_t = Sigma^{1/2} G`` (G: d x s standard
normal; the scale sigma_t does not change the span). For ``Sigma != I`` the span is not
uniformly distributed (it leans towards the high-variance coordinates) and the
moments of P_t have no simple closed form. Flipping the sign of any coordinate leaves
the law of P_t unchanged (``D Sigma^{1/2} G = Sigma^{1/2} D G`` for diagonal ``D =
diag(+-1)``), so every moment with an index appearing an odd number of times vanishes:

    E[P] = diag(p),                       p_i = E[P_ii]
    E[P A P]_ik = E[P_ii P_kk] A_ik + E[P_ik^2] A_ki            (i != k)
    E[P A P]_ii = sum_j E[P_ij^2] A_jj                                       (eq-sim-sandwich)

so the whole fourth-moment map ``A -> E[P A P]`` is two d x d matrices, ``same[i, k] =
E[P_ii P_kk]`` and ``cross[i, k] = E[P_ik^2]``. `projector_moments` estimates ``p``,
``same`` and ``cross`` by Monte Carlo over P (a stated number of draws, split into
batches whose spread gives the standard error, `with_se`); for ``Sigma = I`` it
returns the exact values of a uniformly random rank-s projector,
``p_i = s/d``, ``E[P_ii^2] = s(s+2)/(d(d+2))``, ``E[P_ii P_kk] = s(sd+s-2)/(d(d-1)(d+2))``,
``E[P_ik^2] = s(d-s)/(d(d-1)(d+2))``. The other maps follow from these two:
``E[(I-P) A (I-P)] = A - E[P] A - A E[P] + E[P A P]`` and
``E[(I-P) A P] = A E[P] - E[P A P]`` (since ``P^2 = P``).

The second-moment recursion
---------------------------
For any fixed u, ``w_t - u = (I - P_t)(w_{t-1} - u) + P_t (w_{n_t} - u)``, with P_t
and n_t independent of the past. With ``m(t) = E[w_t]``, ``K(t) = E[w_t w_t^T]``,
``wbar = (1/N) sum_n w_n`` and ``C = (1/N) sum_n w_n w_n^T``:

    m(t) = (I - E[P]) m(t-1) + E[P] wbar
    K(t) = E[(I-P) K(t-1) (I-P)] + E[P C P] + B + B^T,  B = E[(I-P) m(t-1) wbar^T P]
                                                                            (eq-sim-recursion)

(the book's single-expert recursion generalised: with Sigma = I only traces are needed, the cross
term B has trace 0 and the recursion closes on ``E||w_t - u||^2``; under a weighted
metric it does not, and the whole matrix is carried). The second moment about u is
``K - m u^T - u m^T + u u^T`` (`moments_about`). `expected_errors` turns the
recursion into E[G_t] and E[F_t] under any diagonal metric (the Sigma-weighted one,
or the Euclidean one, from the same moments).

Pair forgetting
---------------
An expert at ``w_a`` (task a just learned) that learns task b once moves by
``P (w_b - w_a)``; task a's Sigma-weighted error grows from 0 to
``delta^T P Sigma P delta``, ``delta = w_b - w_a``, in expectation

    E[F_{a <- b}] = delta^T E[P Sigma P] delta = sum_i g_i delta_i^2,
    g_i = sum_j E[P_ij^2] sigma_j                                            (eq-sim-pair)

(`pair_forgetting`), against the Euclidean prediction of the isotropic theory,
``(s/d) ||delta||^2`` (`euclidean_pair_forgetting`).
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass

import numpy as np

from .._checks import check_int
from ..experts import min_norm_update
from .phase_model import check_pool_matrix
from ..tasks import feature_variances

#: Book choice: Monte Carlo draws of P for the projector moments (Sigma != I), and the
#: number of batches whose spread gives their standard error.
DEFAULT_DRAWS = 100_000
DEFAULT_BATCHES = 10
#: Draws of P held in memory at once.
_BLOCK = 5_000

METRICS = ("sigma", "euclidean")


# --------------------------------------------------------------------------- inputs


def check_variances(variances, d: int | None = None) -> np.ndarray:
    """The diagonal of Sigma as a float array (d,) of finite positive numbers."""
    values = np.asarray(variances, dtype=float)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"variances has shape {values.shape}, expected a vector (d,)")
    if d is not None and values.shape != (d,):
        raise ValueError(f"variances has shape {values.shape}, expected (d,) = ({d},)")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"variances={values!r} must be finite and positive")
    return values


def _check_vectors(name: str, value, d: int) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape[-1:] != (d,):
        raise ValueError(f"{name} has shape {array.shape}, expected (..., d) = (..., {d})")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")
    return array


def metric_weights(metric, variances) -> np.ndarray:
    """Diagonal weights of the model error: ``"sigma"`` (Sigma), ``"euclidean"`` (1), or a (d,) array."""
    variances = check_variances(variances)
    if isinstance(metric, str):
        if metric == "sigma":
            return variances
        if metric == "euclidean":
            return np.ones_like(variances)
        raise ValueError(f"metric={metric!r} must be 'sigma', 'euclidean' or a vector of weights")
    weights = np.asarray(metric, dtype=float)
    if weights.shape != variances.shape or not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            f"metric weights of shape {weights.shape} must be finite, non-negative, of shape {variances.shape}"
        )
    return weights


# --------------------------------------------------------------------------- gaps


def weighted_gaps(W, variances) -> np.ndarray:
    """Sigma-weighted squared gaps ``(w_n - w_n')^T Sigma (w_n - w_n')`` (N, N) (eq-sim-error).

    W: ground truths (N, d) (or a `moecl.Pool`); variances: the diagonal of Sigma (d,)
    (``np.ones(d)`` gives the Euclidean gaps of `moecl.theory.phase_model.squared_gaps`).
    """
    W = check_pool_matrix(W)
    variances = check_variances(variances, W.shape[1])
    diff = W[:, None, :] - W[None, :, :]
    return np.sum(diff * diff * variances, axis=-1)


def weighted_pool_quantities(W, variances) -> dict:
    """S and D of the book's single-expert chapter in the Sigma-weighted metric.

    ``S = (1/N) sum_n w_n^T Sigma w_n`` and ``D = (1/N^2) sum_{n,n'} (w_n - w_n')^T Sigma
    (w_n - w_n')``; with Sigma = I they are `moecl.theory.pool_quantities`' S and D.
    """
    W = check_pool_matrix(W)
    variances = check_variances(variances, W.shape[1])
    return {"S": float(np.mean(np.sum(W * W * variances, axis=1))), "D": float(weighted_gaps(W, variances).mean())}


# --------------------------------------------------------------------------- projector moments


@dataclass(frozen=True)
class ProjectorMoments:
    """First and second moments of the projector P onto the span of ``Sigma^{1/2} G``.

    variances (d,): the diagonal of Sigma; s: columns of G; mean_diag (d,): ``p_i =
    E[P_ii]`` (E[P] = diag(p)); same (d, d): ``E[P_ii P_kk]``; cross (d, d):
    ``E[P_ik^2]`` (both symmetric, with the same diagonal E[P_ii^2]); draws: Monte
    Carlo draws behind the estimate (0: exact); batches: the per-batch estimates (a
    tuple of ProjectorMoments, empty when exact) that `with_se` uses.
    """

    variances: np.ndarray
    s: int
    mean_diag: np.ndarray
    same: np.ndarray
    cross: np.ndarray
    draws: int = 0
    batches: tuple = ()

    @property
    def d(self) -> int:
        return int(self.variances.shape[0])

    @property
    def exact(self) -> bool:
        return self.draws == 0

    def mean(self) -> np.ndarray:
        """E[P] = diag(p) (d, d)."""
        return np.diag(self.mean_diag)

    def sandwich(self, A) -> np.ndarray:
        """``E[P A P]`` for a (..., d, d) matrix A (eq-sim-sandwich)."""
        A = np.asarray(A, dtype=float)
        At = np.swapaxes(A, -1, -2)
        out = self.same * A + self.cross * At
        diagonal = np.diagonal(A, axis1=-2, axis2=-1) @ self.cross  # cross is symmetric
        idx = np.arange(self.d)
        out[..., idx, idx] = diagonal
        return out

    def complement_sandwich(self, A) -> np.ndarray:
        """``E[(I - P) A (I - P)] = A - E[P] A - A E[P] + E[P A P]``."""
        A = np.asarray(A, dtype=float)
        p = self.mean_diag
        return A - p[:, None] * A - A * p + self.sandwich(A)

    def mixed(self, A) -> np.ndarray:
        """``E[(I - P) A P] = A E[P] - E[P A P]`` (P^2 = P)."""
        A = np.asarray(A, dtype=float)
        return A * self.mean_diag - self.sandwich(A)

    def forgetting_weights(self, metric="sigma") -> np.ndarray:
        """``g = diag(E[P Omega P])`` for the diagonal metric Omega (eq-sim-pair): ``g_i = sum_j E[P_ij^2] omega_j``.

        ``E[P Omega P]`` is diagonal (eq-sim-sandwich), so ``g`` is all of it.
        """
        return self.cross @ metric_weights(metric, self.variances)


def isotropic_moments(d: int, s: int) -> ProjectorMoments:
    """Exact moments of a uniformly random rank-s projector in R^d (Sigma = I).

    ``P_ii ~ Beta(s/2, (d-s)/2)`` gives ``E[P_ii] = s/d`` and ``E[P_ii^2] = s(s+2)/(d(d+2))``;
    ``sum_k P_ik^2 = P_ii`` (P^2 = P) and ``sum_k P_kk = s`` (trace) then give
    ``E[P_ik^2] = s(d-s)/(d(d-1)(d+2))`` and ``E[P_ii P_kk] = s(sd+s-2)/(d(d-1)(d+2))``, i != k.
    """
    d, s = _check_dims(d, s)
    diag_sq = s * (s + 2) / (d * (d + 2))
    off_cross = s * (d - s) / (d * (d - 1) * (d + 2))
    off_same = s * (s * d + s - 2) / (d * (d - 1) * (d + 2))
    eye = np.eye(d, dtype=bool)
    same = np.where(eye, diag_sq, off_same)
    cross = np.where(eye, diag_sq, off_cross)
    return ProjectorMoments(np.ones(d), s, np.full(d, s / d), same, cross)


def _check_dims(d, s) -> tuple[int, int]:
    d = check_int("d", d, minimum=2)
    s = check_int("s", s, minimum=1)
    if s >= d:
        raise ValueError(f"s={s} must be smaller than d={d}")
    return d, s


def sample_projectors(variances, s: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` projectors (draws, d, d) onto the span of ``Sigma^{1/2} G``, G d x s standard normal."""
    variances = check_variances(variances)
    d, s = _check_dims(variances.size, s)
    X = np.sqrt(variances)[:, None] * rng.standard_normal((draws, d, s))
    # orthonormal basis of the span: Q = X L^{-T} with X^T X = L L^T (faster than QR here)
    L = np.linalg.cholesky(np.swapaxes(X, -1, -2) @ X)
    Q = X @ np.swapaxes(np.linalg.inv(L), -1, -2)
    return Q @ np.swapaxes(Q, -1, -2)


def projector_moments(
    variances,
    s: int,
    draws: int = DEFAULT_DRAWS,
    batches: int = DEFAULT_BATCHES,
    seed: int = 0,
    method: str = "auto",
) -> ProjectorMoments:
    """E[P_ii], E[P_ii P_kk], E[P_ik^2] for the span of ``Sigma^{1/2} G`` (eq-sim-sandwich).

    variances: the diagonal of Sigma (d,), e.g. ``moecl.tasks.feature_variances(d, kappa)``;
    s: the number of columns. When all variances are equal (Sigma proportional to I)
    the exact values of `isotropic_moments` are returned (draws = 0) unless
    ``method="monte_carlo"`` (used to check the estimator against them). Otherwise a
    Monte Carlo (**book choice**) over ``draws`` projectors (seeded by ``seed``), split
    into ``batches`` equal batches whose estimates are kept for `with_se`; the odd
    moments are set to their value 0 by the sign-flip symmetry rather than estimated.
    Results are cached.
    """
    variances = check_variances(variances)
    d, s = _check_dims(variances.size, s)
    draws = check_int("draws", draws, minimum=2)
    batches = check_int("batches", batches, minimum=2)
    if draws % batches:
        raise ValueError(f"draws={draws} must be a multiple of batches={batches}")
    if seed is None or isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if method not in ("auto", "monte_carlo"):
        raise ValueError(f"method={method!r} must be 'auto' or 'monte_carlo'")
    if method == "auto" and np.all(variances == variances[0]):
        exact = isotropic_moments(d, s)
        return ProjectorMoments(variances.copy(), s, exact.mean_diag, exact.same, exact.cross)
    return _monte_carlo_moments(tuple(variances.tolist()), s, draws, batches, int(seed))


@functools.lru_cache(maxsize=32)
def _monte_carlo_moments(variances: tuple, s: int, draws: int, batches: int, seed: int) -> ProjectorMoments:
    variances = np.asarray(variances)
    d = variances.size
    per_batch = draws // batches
    rngs = [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(batches)]
    estimates = []
    for rng in rngs:
        total_diag = np.zeros(d)
        total_same = np.zeros((d, d))
        total_cross = np.zeros((d, d))
        done = 0
        while done < per_batch:
            block = min(_BLOCK, per_batch - done)
            P = sample_projectors(variances, s, block, rng)
            diag = np.ascontiguousarray(np.diagonal(P, axis1=1, axis2=2))
            flat = P.reshape(block, d * d)
            total_diag += diag.sum(axis=0)
            total_same += diag.T @ diag
            total_cross += np.einsum("bi,bi->i", flat, flat).reshape(d, d)
            done += block
        estimates.append(
            ProjectorMoments(
                variances, s, total_diag / per_batch, total_same / per_batch, total_cross / per_batch, per_batch
            )
        )
    mean_diag = np.mean([e.mean_diag for e in estimates], axis=0)
    same = np.mean([e.same for e in estimates], axis=0)
    cross = np.mean([e.cross for e in estimates], axis=0)
    return ProjectorMoments(variances, s, mean_diag, same, cross, draws, tuple(estimates))


def with_se(function, moments: ProjectorMoments):
    """``function(moments)`` and the Monte Carlo standard error of it due to the moments.

    The standard error is the spread of ``function`` over the batch estimates,
    ``std(ddof=1) / sqrt(batches)`` (batch means; first order in the moments' error,
    which is what matters when it is small). Exact moments give SE 0.
    """
    value = np.asarray(function(moments), dtype=float)
    if moments.exact or not moments.batches:
        return value, np.zeros_like(value)
    values = np.array([function(batch) for batch in moments.batches], dtype=float)
    return value, values.std(axis=0, ddof=1) / np.sqrt(len(values))


# --------------------------------------------------------------------------- the recursion


def expected_moments(W, moments: ProjectorMoments, T: int, w0=None) -> dict:
    """Mean and second moment of the single expert's model, t = 0..T (eq-sim-recursion).

    W: ground truths (N, d); tasks drawn uniformly from them; features with the
    projector moments ``moments``; start ``w0`` (default 0). Returns ``{"mean": (T+1, d),
    "second": (T+1, d, d)}``, ``mean[t] = E[w_t]``, ``second[t] = E[w_t w_t^T]``.
    """
    W = check_pool_matrix(W)
    d = W.shape[1]
    if moments.d != d:
        raise ValueError(f"moments are for d={moments.d}, but W has d={d}")
    T = check_int("T", T, minimum=1)
    w0 = np.zeros(d) if w0 is None else _check_vectors("w0", w0, d)
    if w0.shape != (d,):
        raise ValueError(f"w0 has shape {w0.shape}, expected (d,) = ({d},)")
    wbar = W.mean(axis=0)
    C = W.T @ W / W.shape[0]
    p = moments.mean_diag
    fresh = moments.sandwich(C)
    mean = np.empty((T + 1, d))
    second = np.empty((T + 1, d, d))
    mean[0], second[0] = w0, np.outer(w0, w0)
    for t in range(1, T + 1):
        B = moments.mixed(np.outer(mean[t - 1], wbar))
        second[t] = moments.complement_sandwich(second[t - 1]) + fresh + B + B.T
        mean[t] = (1 - p) * mean[t - 1] + p * wbar
    return {"mean": mean, "second": second}


def moments_about(u, mean, second) -> np.ndarray:
    """``E[(w - u)(w - u)^T] = E[w w^T] - m u^T - u m^T + u u^T`` for fixed u (d,)."""
    u = np.asarray(u, dtype=float)
    mean = np.asarray(mean, dtype=float)
    um = mean[..., :, None] * u
    return np.asarray(second) - um - np.swapaxes(um, -1, -2) + np.outer(u, u)


def expected_errors(W, moments: ProjectorMoments, T: int, metric="sigma") -> dict:
    """E[G_t] and E[F_t] of the single expert (M = 1, w_0 = 0) for t = 1..T.

    The paper's metrics (Section 4) with the model error ``E_n(w) = (w - w_n)^T Omega
    (w - w_n)``, Omega = Sigma (``metric="sigma"``, eq-sim-error), I (``"euclidean"``)
    or ``diag(metric)``. Derivation (as in `moecl.theory.phase_model`): with ``b_n(t) =
    E[sum_{i<=t} 1{n_i = n} w_t]``,

        b_n(t) = (I - E[P]) b_n(t-1) + E[P] wbar (t-1)/N + ((I - E[P]) m(t-1) + E[P] w_n)/N

    the expected total error of the t tasks seen is ``Tot(t) = t tr(Omega K(t)) - 2 sum_n
    w_n^T Omega b_n(t) + (t/N) sum_n w_n^T Omega w_n``; the expected error of round t's
    own task just after it is learned is ``L(t) = tr(Omega E[(I-P) Abar (I-P)])`` with
    ``Abar = (1/N) sum_n E[(w_{t-1} - w_n)(w_{t-1} - w_n)^T]``; and
    ``E[G_t] = Tot(t)/t``, ``E[F_t] = (Tot(t) - L(t) - sum_{i<t} L(i)) / (t - 1)``.
    With Sigma = I these are Proposition 4 (`moecl.theory.single_expert_generalization`
    and `single_expert_forgetting`). Returns ``{"generalization": (T,), "forgetting":
    (T,)}`` (forgetting NaN at t = 1).
    """
    W = check_pool_matrix(W)
    N, d = W.shape
    omega = metric_weights(metric, moments.variances)
    run = expected_moments(W, moments, T)
    mean, second = run["mean"], run["second"]
    p = moments.mean_diag
    wbar = W.mean(axis=0)
    C = W.T @ W / N
    truth_norms = np.sum(W * W * omega, axis=1)
    b = np.zeros((N, d))
    generalization = np.empty(T)
    forgetting = np.full(T, np.nan)
    learned_total = 0.0
    for t in range(1, T + 1):
        b = (1 - p) * b + (p * wbar) * (t - 1) / N + ((1 - p) * mean[t - 1] + p * W) / N
        total = t * np.sum(omega * np.diagonal(second[t])) - 2 * np.sum(W * omega * b) + t * truth_norms.mean()
        Abar = second[t - 1] - np.outer(mean[t - 1], wbar) - np.outer(wbar, mean[t - 1]) + C
        learned = np.sum(omega * np.diagonal(moments.complement_sandwich(Abar)))
        generalization[t - 1] = total / t
        if t > 1:
            forgetting[t - 1] = (total - learned - learned_total) / (t - 1)
        learned_total += learned
    return {"generalization": generalization, "forgetting": forgetting}


# --------------------------------------------------------------------------- pairs


def pair_forgetting(delta, moments: ProjectorMoments, metric="sigma") -> np.ndarray:
    """Expected forgetting of task a when an expert at w_a learns task b once (eq-sim-pair).

    delta: ``w_b - w_a`` (..., d). Returns ``delta^T E[P Omega P] delta = sum_i g_i
    delta_i^2`` (...,), Omega = Sigma (``"sigma"``), I or ``diag(metric)``.
    """
    delta = _check_vectors("delta", delta, moments.d)
    return (delta * delta) @ moments.forgetting_weights(metric)


def euclidean_pair_forgetting(delta, s: int) -> np.ndarray:
    """The isotropic theory's prediction ``(s/d) ||delta||^2`` for the same pair (Sigma ignored)."""
    delta = np.asarray(delta, dtype=float)
    d, s = _check_dims(delta.shape[-1], s)
    delta = _check_vectors("delta", delta, d)
    return s / d * np.sum(delta * delta, axis=-1)


def weighted_gap(delta, variances) -> np.ndarray:
    """``delta^T Sigma delta`` (...,) for gaps delta (..., d)."""
    variances = check_variances(variances)
    delta = _check_vectors("delta", delta, variances.size)
    return (delta * delta) @ variances


# --------------------------------------------------------------------------- Monte Carlo


def simulate_pair_forgetting(delta, variances, s: int, draws: int, seed: int = 0, metric="sigma") -> np.ndarray:
    """Per-draw forgetting ``(P delta)^T Omega (P delta)`` (draws, ...) of task a after learning b (Eq. (5)).

    The expert at w_a learns task b's data ``X = Sigma^{1/2} G`` by Eq. (5); the change
    is ``P delta``. An independent Monte Carlo for `pair_forgetting`.
    """
    variances = check_variances(variances)
    delta = _check_vectors("delta", delta, variances.size)
    omega = metric_weights(metric, variances)
    draws = check_int("draws", draws, minimum=2)
    rng = np.random.default_rng(seed)
    flat = delta.reshape(-1, variances.size)
    out = np.empty((draws, flat.shape[0]))
    for start in range(0, draws, _BLOCK):
        block = min(_BLOCK, draws - start)
        P = sample_projectors(variances, s, block, rng)
        moved = np.einsum("bij,kj->bki", P, flat)
        out[start : start + block] = np.sum(moved * moved * omega, axis=-1)
    return out.reshape((draws,) + delta.shape[:-1])


def simulate_single_expert(W, variances, s: int, T: int, replicates: int, seed: int = 0, metric="sigma") -> dict:
    """Monte Carlo of one expert (M = 1, w_0 = 0) learning T tasks by Eq. (5), plain numpy.

    Tasks uniform from W (N, d); all s columns of X_t are ``N(0, Sigma)`` (isotropic-
    Gaussian-with-covariance features, the setting of `expected_errors`). Returns
    ``{"generalization": (R, T), "forgetting": (R, T), "final": (R, d)}`` with the model
    error of the metric (F NaN at t = 1) and the final models w_T, from the definitions
    ``G_t = 1/t sum_{i<=t} E_{n_i}(w_t)``, ``F_t = 1/(t-1) sum_{i<t} [E_{n_i}(w_t) - E_{n_i}(w_i)]``.
    """
    W = check_pool_matrix(W)
    N, d = W.shape
    variances = check_variances(variances, d)
    omega = metric_weights(metric, variances)
    _check_dims(d, s)
    T = check_int("T", T, minimum=1)
    R = check_int("replicates", replicates, minimum=2)
    rng = np.random.default_rng(seed)
    w = np.zeros((R, d))
    counts = np.zeros((R, N))
    learned_total = np.zeros(R)
    rows = np.arange(R)
    G = np.empty((R, T))
    F = np.full((R, T), np.nan)
    scale = np.sqrt(variances)[:, None]
    for t in range(1, T + 1):
        n = rng.integers(0, N, size=R)
        X = scale * rng.standard_normal((R, d, s))
        y = np.einsum("rds,rd->rs", X, W[n])
        w = min_norm_update(w, X, y)
        diff = w[:, None, :] - W[None, :, :]
        errors = np.sum(diff * diff * omega, axis=-1)  # (R, N)
        counts[rows, n] += 1
        total = np.sum(counts * errors, axis=1)
        own = errors[rows, n]
        G[:, t - 1] = total / t
        if t > 1:
            F[:, t - 1] = (total - own - learned_total) / (t - 1)
        learned_total += own
    return {"generalization": G, "forgetting": F, "final": w}


__all__ = [
    "DEFAULT_BATCHES",
    "DEFAULT_DRAWS",
    "METRICS",
    "ProjectorMoments",
    "check_variances",
    "euclidean_pair_forgetting",
    "expected_errors",
    "expected_moments",
    "feature_variances",
    "isotropic_moments",
    "metric_weights",
    "moments_about",
    "pair_forgetting",
    "projector_moments",
    "sample_projectors",
    "simulate_pair_forgetting",
    "simulate_single_expert",
    "weighted_gap",
    "weighted_gaps",
    "weighted_pool_quantities",
    "with_se",
]
