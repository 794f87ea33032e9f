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
