"""Linear experts and their update rule (Eq. (4)-(5)).

Only the expert selected by the router learns the task, by the smallest change of its
model that fits the task's data exactly:

    w_t = argmin ||w - w_{t-1}||_2  s.t.  X_t^T w = y_t                      Eq. (4)
    w_t = w_{t-1} + X_t (X_t^T X_t)^{-1} (y_t - X_t^T w_{t-1})             Eq. (5)

Equivalently ``w_t = (I - P_t) w_{t-1} + P_t w*`` with ``P_t`` the orthogonal projector
onto the column span of ``X_t`` and ``y_t = X_t^T w*``.
"""

from __future__ import annotations

import numpy as np


def min_norm_change(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The change ``w_t - w_{t-1}`` of Eq. (5), batched over leading axes.

    w: (..., d) current model; X: (..., d, s) data (columns are samples);
    y: (..., s) labels. Returns (..., d).
    """
    Xt = np.swapaxes(X, -1, -2)
    gram = Xt @ X
    residual = y - (Xt @ w[..., None])[..., 0]
    coefficients = np.linalg.solve(gram, residual[..., None])
    return (X @ coefficients)[..., 0]


def min_norm_update(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The updated model ``w_t`` of Eq. (5)."""
    return w + min_norm_change(w, X, y)


def gram_factor(Z: np.ndarray) -> np.ndarray:
    """Cholesky factor L of the Gram matrix ``X^T X = L L^T`` from the samples ``Z = X^T`` (..., s, d)."""
    return np.linalg.cholesky(Z @ np.swapaxes(Z, -1, -2))


def projected_change(Z: np.ndarray, L: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``P_t delta = X (X^T X)^{-1} X^T delta``: the change of Eq. (5) with ``delta = w* - w``.

    Z: (R, s, d) samples as rows (``X^T``); L: (R, s, s) from `gram_factor`; delta:
    (R, d). The two triangular solves run vectorised over the leading axis, which
    for small s is much faster than a batched LAPACK solve per round.
    """
    b = (Z @ delta[:, :, None])[:, :, 0]
    s = b.shape[1]
    y = np.empty_like(b)
    for i in range(s):  # L y = b
        y[:, i] = (b[:, i] - np.sum(L[:, i, :i] * y[:, :i], axis=1)) / L[:, i, i]
    a = np.empty_like(b)
    for i in reversed(range(s)):  # L^T a = y
        a[:, i] = (y[:, i] - np.sum(L[:, i + 1 :, i] * a[:, i + 1 :], axis=1)) / L[:, i, i]
    return (np.swapaxes(Z, -1, -2) @ a[:, :, None])[:, :, 0]


def projector(X: np.ndarray) -> np.ndarray:
    """Orthogonal projector P = X (X^T X)^{-1} X^T onto the column span of X (..., d, s)."""
    Xt = np.swapaxes(X, -1, -2)
    return X @ np.linalg.solve(Xt @ X, Xt)


def squared_distances(w: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Model errors E(w) = ||w - w_n||^2 of models w (..., d) against every truth W (N, d).

    Returns (..., N).
    """
    diff = w[..., None, :] - W
    return np.sum(diff * diff, axis=-1)


def squared_distances_fast(w: np.ndarray, W: np.ndarray, W_sq: np.ndarray) -> np.ndarray:
    """`squared_distances` for w (R, d) as ``||w||^2 - 2 w.w_n + ||w_n||^2`` (W_sq: (N,) norms).

    Per-replicate products (a stacked matmul), so a replicate's numbers do not
    depend on the batch it is in.
    """
    cross = (w[:, None, :] @ W.T)[:, 0]
    return np.sum(w * w, axis=1)[:, None] - 2.0 * cross + W_sq


def gradient_step_size(Z: np.ndarray) -> np.ndarray:
    """``1 / lambda_max(X^T X)`` for samples ``Z = X^T`` (..., s, d): the step of `gradient_change`."""
    return 1.0 / np.linalg.eigvalsh(Z @ np.swapaxes(Z, -1, -2))[..., -1]


def gradient_change(Z: np.ndarray, delta: np.ndarray, steps: int, step_size: np.ndarray) -> np.ndarray:
    """The change after ``steps`` gradient steps on the task's squared loss, instead of Eq. (5).

    Gradient descent on ``1/2 ||X^T w - y||^2`` from ``w_{t-1}`` with ``y = X^T w*`` and
    ``delta = w* - w_{t-1}``: ``c <- c - step X X^T (c - delta)``, starting at ``c = 0``.
    Every iterate lies in span(X), and with ``step = 1 / lambda_max(X^T X)`` the
    iterates converge to the minimum-norm change ``P delta`` of Eq. (5) as steps -> oo.
    Z: (R, s, d); delta: (R, d); step_size: (R,).
    """
    change = np.zeros_like(delta)
    Zt = np.swapaxes(Z, -1, -2)
    for _ in range(steps):
        residual = (Z @ (change - delta)[:, :, None])  # X^T (c - delta), (R, s, 1)
        change -= step_size[:, None] * (Zt @ residual)[:, :, 0]
    return change


class ExactUpdate:
    """The selected expert learns the task exactly, Eq. (5): the change ``P_t (w_{n_t} - w)``.

    Every update rule has two methods: `prepare`, the per-round constants it needs from the
    samples of a block of rounds Z (R, c, s, d) (``None``: none beyond the Gram factors), and
    `change`, the change of models w (R, d) given a round's samples Z (R, s, d), Gram factors
    L (R, s, s), prepared constants and ``delta = w_{n_t} - w`` (R, d).
    """

    name = "exact"

    def prepare(self, Z: np.ndarray):
        return None

    def change(self, Z, L, prepared, delta, steps: int) -> np.ndarray:
        return projected_change(Z, L, delta)


class GradientUpdate(ExactUpdate):
    """``steps`` gradient steps on the task's squared loss instead of Eq. (5) (**book choice**,
    book/strategies.md; `gradient_change`, with the step sizes of `gradient_step_size`)."""

    name = "gradient"

    def prepare(self, Z: np.ndarray):
        return gradient_step_size(Z)

    def change(self, Z, L, prepared, delta, steps: int) -> np.ndarray:
        return gradient_change(Z, delta, steps, prepared)


#: How the selected expert learns a task by name (``Config.expert_update``): Eq. (5)
#: exactly, or ``Config.gradient_steps`` steps of gradient descent on the task's squared loss.
EXPERT_UPDATES = {rule.name: rule for rule in (ExactUpdate(), GradientUpdate())}


def change_norms(Z: np.ndarray, L: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """``||P_t (w* - w^(m))||`` for every expert: how far Eq. (5) would move each one.

    The norm depends on the task's data only, ``||P (w* - w)||^2 = r^T (X^T X)^{-1} r``
    with the residual ``r = y - X^T w``; here r is formed as ``X^T (w* - w)``.
    Z: (R, s, d) samples, L: (R, s, s) from `gram_factor`, deltas: (R, M, d). Returns (R, M).
    """
    residuals = Z @ np.swapaxes(deltas, -1, -2)  # (R, s, M)
    whitened = np.linalg.solve(L, residuals)  # L^{-1} r, so ||.||^2 = r^T (L L^T)^{-1} r
    return np.sqrt(np.sum(whitened * whitened, axis=1))


def share_within_set(rule: str, models: np.ndarray, in_set: np.ndarray, selected: np.ndarray, learn) -> np.ndarray:
    """Spread the selected expert's round to the rest of its expert set (**book choice**, book/sharing.md).

    rule: ``"update"``: every other expert k of the set learns the task too, by the
    same rule as the selected one, ``w^(k) <- w^(k) + learn(w^(k))`` (Eq. (5):
    ``learn(w) = P_t (w_{n_t} - w)``); ``"average"``: every expert of the set is replaced
    by the set's mean model (after the selected expert's own update); ``"none"``: nothing.
    models: (R, M, d), changed in place; in_set: (R, M) membership (the selected expert
    included); selected: (R,); learn: ``w (R, d) -> change (R, d)``, the change the
    task's data give a model w. Returns (R,): the replicates in which other experts moved.
    """
    R, M, _ = models.shape
    others = in_set & (np.arange(M) != selected[:, None])
    shared = np.any(others, axis=1)
    if rule == "none" or not shared.any():
        return np.zeros(R, dtype=bool)
    if rule == "update":
        for k in range(M):
            rows = others[:, k]
            if rows.any():
                models[rows, k] += learn(models[:, k])[rows]
    elif rule == "average":
        rows = np.flatnonzero(shared)
        members = in_set[rows][..., None]
        mean = np.sum(models[rows] * members, axis=1) / np.sum(members, axis=1)
        models[rows] = np.where(members, mean[:, None, :], models[rows])
    else:
        raise ValueError(f"sharing rule {rule!r} is not one of ('none', 'update', 'average')")
    return shared
