"""The single expert under Definition 1 features: exact expected forgetting and generalization error.

Under Definition 1 one column of X_t is ``beta v_{n_t}`` and the other ``s - 1`` are
isotropic Gaussian noise, so the span of X_t is ``span(v_hat_n) + Q`` with ``v_hat_n =
v_n / ||v_n||`` and Q the span of the noise columns projected onto the complement of
``v_hat_n``: a uniformly random ``(s - 1)``-dimensional subspace of that
``(d - 1)``-dimensional complement. The projector is therefore ``P = v_hat_n v_hat_n^T +
P_Q``, its law depends on the task's truth n, and Proposition 4 (uniform random
projector) is only an approximation (book chapter: single expert).

Its moments are still exact: in an orthonormal basis whose first vector is ``v_hat_n``,
``P = diag(1, P_Q)`` with ``P_Q`` the uniform rank-``(s - 1)`` projector of
``R^(d-1)``, whose moments `moecl.theory.similarity.isotropic_moments` holds
(`Definition1Moments`). The
second-moment recursion of the single expert (as in `moecl.theory.similarity`, now
with moments that depend on the task's truth) then gives E[G_t] and E[F_t] exactly:
with ``Pi_n = E[P | n]``, ``m(t) = E[w_t]``, ``K(t) = E[w_t w_t^T]`` and ``b_n(t) =
E[sum_{i <= t} 1{n_i = n} w_t]``,

    m(t)   = mean_n [(I - Pi_n) m(t-1) + Pi_n w_n]
    K(t)   = mean_n [E[(I-P) K(t-1) (I-P) | n] + E[P w_n w_n^T P | n] + B_n + B_n^T],
             B_n = E[(I-P) m(t-1) w_n^T P | n]
    b_n(t) = (I - mean_k Pi_k) b_n(t-1) + (t-1)/N mean_k Pi_k w_k + ((I - Pi_n) m(t-1) + Pi_n w_n) / N

and, as for Proposition 4, ``Tot(t) = t tr K(t) - 2 sum_n w_n^T b_n(t) + (t/N) sum_n
||w_n||^2``, ``L(t) = mean_n tr E[(I-P) A_n (I-P) | n]`` with ``A_n =
E[(w_{t-1} - w_n)(w_{t-1} - w_n)^T]``, ``E[G_t] = Tot(t)/t`` and ``E[F_t] = (Tot(t) -
sum_{i <= t} L(i)) / (t - 1)``. The scales beta and sigma_t do not enter: only the span
of X_t does.
"""

from __future__ import annotations

import numpy as np

from .phase_model import check_int
from .similarity import isotropic_moments


class Definition1Moments:
    """Conditional moments of the projector P given the task's truth n (Definition 1 features).

    With ``v = v_hat_n``, ``H = I - v v^T`` and ``c = (s - 1)/(d - 1)``, ``P = v v^T + P_Q``
    where ``P_Q`` is a uniform rank-``(s - 1)`` projector of the range of H. For such a
    projector ``E[P_Q A P_Q] = a A + b A^T + g tr(A) H`` for A living on that range
    (Haar invariance; a, b, g from `moecl.theory.similarity.isotropic_moments` in
    dimension ``d - 1``). V may carry leading batch axes (several pools at once, (..., N,
    d)); every method takes A broadcastable to (..., N, d, d) and returns (..., N, d, d),
    one matrix per truth n.
    """

    def __init__(self, V, s: int):
        V = np.asarray(V, dtype=float)
        if V.ndim < 2:
            raise ValueError(f"V must be (..., N, d), got shape {V.shape}")
        N, d = V.shape[-2:]
        s = check_int("s", s, minimum=1)
        if s >= d:
            raise ValueError(f"s={s} must be smaller than d={d}")
        norms = np.linalg.norm(V, axis=-1)
        if not np.all(norms > 0):
            raise ValueError("every feature signal v_n must be non-zero")
        self.N, self.d, self.s = N, d, s
        self.c = (s - 1) / (d - 1)
        v = V / norms[..., None]
        self.v = v  # (..., N, d)
        self.vv = v[..., :, None] * v[..., None, :]  # (..., N, d, d)
        self.H = np.eye(d) - self.vv
        if s > 1:
            noise = isotropic_moments(d - 1, s - 1)
            self._a, self._b, self._g = noise.same[0, 1], noise.cross[0, 1], noise.cross[0, 1]
        else:  # P_Q = 0
            self._a = self._b = self._g = 0.0
        #: E[P | n] = v v^T + c H, (..., N, d, d)
        self.mean = self.vv + self.c * self.H

    def _parts(self, A):
        """``A v``, ``v^T A``, ``v^T A v`` and ``H A H`` (rank-one updates, no d x d products)."""
        A = np.asarray(A, dtype=float)
        v = self.v
        Av = np.einsum("...ij,...j->...i", A, v)
        vA = np.einsum("...i,...ij->...j", v, A)
        vAv = np.sum(v * Av, axis=-1)[..., None, None]
        A_HH = A - v[..., :, None] * vA[..., None, :] - Av[..., :, None] * v[..., None, :] + vAv * self.vv
        return Av, vA, vAv, A_HH

    def _noise_sandwich(self, A_HH):
        """``E[P_Q A P_Q]`` for A_HH = H A H (..., N, d, d)."""
        trace = np.trace(A_HH, axis1=-2, axis2=-1)
        return self._a * A_HH + self._b * np.swapaxes(A_HH, -1, -2) + self._g * trace[..., None, None] * self.H

    def complement_sandwich(self, A) -> np.ndarray:
        """``E[(I - P) A (I - P) | n] = (1 - 2c) HAH + E[P_Q HAH P_Q]``."""
        A_HH = self._parts(A)[3]
        return (1 - 2 * self.c) * A_HH + self._noise_sandwich(A_HH)

    def sandwich(self, A) -> np.ndarray:
        """``E[P A P | n] = vv^T A vv^T + c (vv^T A H + H A vv^T) + E[P_Q HAH P_Q]``."""
        Av, vA, vAv, A_HH = self._parts(A)
        v = self.v
        vAH = v[..., :, None] * (vA - vAv[..., 0] * v)[..., None, :]  # vv^T A H
        HAv = (Av - vAv[..., 0] * v)[..., :, None] * v[..., None, :]  # H A vv^T
        return vAv * self.vv + self.c * (vAH + HAv) + self._noise_sandwich(A_HH)

    def mixed(self, A) -> np.ndarray:
        """``E[(I - P) A P | n] = (1 - c) H A vv^T + c HAH - E[P_Q HAH P_Q]``."""
        Av, _, vAv, A_HH = self._parts(A)
        v = self.v
        HAv = (Av - vAv[..., 0] * v)[..., :, None] * v[..., None, :]
        return (1 - self.c) * HAv + self.c * A_HH - self._noise_sandwich(A_HH)


def expected_errors(W, V, s: int, T: int) -> dict:
    """E[G_t] and E[F_t] (t = 1..T) of one expert (M = 1, w_0 = 0) under Definition 1 features.

    W (..., N, d): ground truths; V (..., N, d): their feature signals (any non-zero
    vectors); leading axes are independent pools computed together. s: samples per
    task; tasks drawn uniformly from the pool. Exact (see the module docstring).
    Returns ``{"generalization": (..., T), "forgetting": (..., T)}`` (forgetting NaN at
    t = 1).
    """
    W = np.asarray(W, dtype=float)
    V = np.asarray(V, dtype=float)
    if W.ndim < 2 or W.shape != V.shape:
        raise ValueError(f"W {W.shape} and V {V.shape} must both be (..., N, d)")
    T = check_int("T", T, minimum=1)
    N, d = W.shape[-2:]
    batch = W.shape[:-2]
    moments = Definition1Moments(V, s)
    Pi = moments.mean  # (..., N, d, d)
    Pi_bar = Pi.mean(axis=-3)
    target = np.einsum("...nij,...nj->...ni", Pi, W)  # Pi_n w_n
    WW = W[..., :, None] * W[..., None, :]  # (..., N, d, d)
    fresh = moments.sandwich(WW).mean(axis=-3)
    truth_norms = np.sum(W * W, axis=-1).mean(axis=-1)
    mean, second = np.zeros(batch + (d,)), np.zeros(batch + (d, d))
    b = np.zeros(batch + (N, d))
    keep_bar = np.swapaxes(np.eye(d) - Pi_bar, -1, -2)
    generalization = np.empty(batch + (T,))
    forgetting = np.full(batch + (T,), np.nan)
    learned_total = np.zeros(batch)
    for t in range(1, T + 1):
        # error of round t's task just after it is learned: A_n = E[(w_{t-1} - w_n)(w_{t-1} - w_n)^T]
        mW = mean[..., None, :, None] * W[..., :, None, :]  # m w_n^T, (..., N, d, d)
        about = second[..., None, :, :] - mW - np.swapaxes(mW, -1, -2) + WW
        learned = np.trace(moments.complement_sandwich(about), axis1=-2, axis2=-1).mean(axis=-1)
        kept = mean[..., None, :] - np.einsum("...nij,...j->...ni", Pi, mean) + target  # E[w_t | n_t = n]
        b = b @ keep_bar + (t - 1) / N * target.mean(axis=-2)[..., None, :] + kept / N
        B = moments.mixed(mW)  # E[(I - P) m w_n^T P | n]
        second = (moments.complement_sandwich(second[..., None, :, :]) + B + np.swapaxes(B, -1, -2)).mean(axis=-3) + fresh
        mean = kept.mean(axis=-2)
        total = t * np.trace(second, axis1=-2, axis2=-1) - 2 * np.sum(W * b, axis=(-2, -1)) + t * truth_norms
        generalization[..., t - 1] = total / t
        if t > 1:
            forgetting[..., t - 1] = (total - learned - learned_total) / (t - 1)
        learned_total = learned_total + learned
    return {"generalization": generalization, "forgetting": forgetting}
