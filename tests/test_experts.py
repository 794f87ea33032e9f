"""The expert update, Eq. (4)-(5), and the helpers the engine builds it from."""

import numpy as np
import pytest

from moecl import experts


@pytest.fixture
def task():
    rng = np.random.default_rng(0)
    d, s = 12, 5
    X = rng.standard_normal((d, s))
    w_star = rng.standard_normal(d)
    w_prev = rng.standard_normal(d)
    return X, w_star, w_prev, X.T @ w_star


def test_update_fits_the_task(task):
    X, _, w_prev, y = task
    w = experts.min_norm_update(w_prev, X, y)
    np.testing.assert_allclose(X.T @ w, y, atol=1e-12)


def test_update_is_the_minimum_norm_change(task):
    """Eq. (4): the change solves X^T delta = y - X^T w_prev with least norm (lstsq gives that solution)."""
    X, _, w_prev, y = task
    change = experts.min_norm_change(w_prev, X, y)
    expected, *_ = np.linalg.lstsq(X.T, y - X.T @ w_prev, rcond=None)
    np.testing.assert_allclose(change, expected, atol=1e-12)
    # Any other feasible change (add a null-space direction of X^T) is longer.
    null = np.linalg.svd(X.T)[2][-1]
    assert np.linalg.norm(change + 0.1 * null) > np.linalg.norm(change)


def test_projection_identity(task):
    """w_t = (I - P) w_{t-1} + P w* with P the projector onto span(X)."""
    X, w_star, w_prev, y = task
    P = experts.projector(X)
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    np.testing.assert_allclose(P, P.T, atol=1e-12)
    assert np.isclose(np.trace(P), X.shape[1])
    np.testing.assert_allclose(
        experts.min_norm_update(w_prev, X, y), (np.eye(len(w_prev)) - P) @ w_prev + P @ w_star, atol=1e-12
    )


def test_engine_form_equals_eq5_batched():
    """The engine's Cholesky/triangular-solve form equals Eq. (5) on a batch."""
    rng = np.random.default_rng(1)
    R, d, s = 7, 10, 4
    Z = rng.standard_normal((R, s, d))  # samples as rows, Z = X^T
    X = np.swapaxes(Z, 1, 2)
    w_prev, w_star = rng.standard_normal((2, R, d))
    y = (Z @ w_star[:, :, None])[:, :, 0]
    L = experts.gram_factor(Z)
    np.testing.assert_allclose(L @ np.swapaxes(L, 1, 2), Z @ X, atol=1e-12)
    np.testing.assert_allclose(
        experts.projected_change(Z, L, w_star - w_prev), experts.min_norm_change(w_prev, X, y), atol=1e-12
    )


def test_squared_distances():
    rng = np.random.default_rng(2)
    w, W = rng.standard_normal((5, 8)), rng.standard_normal((3, 8))
    slow = experts.squared_distances(w, W)
    assert slow.shape == (5, 3)
    np.testing.assert_allclose(slow[2, 1], np.sum((w[2] - W[1]) ** 2))
    np.testing.assert_allclose(experts.squared_distances_fast(w, W, np.sum(W * W, axis=1)), slow, atol=1e-12)
