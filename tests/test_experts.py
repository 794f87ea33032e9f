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


def test_gradient_change_stays_in_the_span_and_converges():
    rng = np.random.default_rng(3)
    R, d, s = 4, 10, 3
    Z = rng.standard_normal((R, s, d))
    delta = rng.standard_normal((R, d))
    step = experts.gradient_step_size(Z)
    np.testing.assert_allclose(step, 1 / np.array([np.linalg.eigvalsh(z.T @ z).max() for z in Z]))
    exact = experts.projected_change(Z, experts.gram_factor(Z), delta)
    previous = np.inf
    for steps in (1, 5, 50, 2000):
        change = experts.gradient_change(Z, delta, steps, step)
        for z, c in zip(Z, change):  # every iterate lies in span(X)
            np.testing.assert_allclose(experts.projector(z.T) @ c, c, atol=1e-12)
        error = np.max(np.abs(change - exact))
        assert error < previous
        previous = error
    assert previous < 1e-10


def test_change_norms_are_the_eq5_change_of_every_expert():
    rng = np.random.default_rng(4)
    R, M, d, s = 3, 5, 9, 4
    Z = rng.standard_normal((R, s, d))
    models, w_star = rng.standard_normal((R, M, d)), rng.standard_normal((R, d))
    norms = experts.change_norms(Z, experts.gram_factor(Z), w_star[:, None, :] - models)
    for r in range(R):
        y = Z[r] @ w_star[r]
        for m in range(M):
            expected = np.linalg.norm(experts.min_norm_change(models[r, m], Z[r].T, y))
            assert norms[r, m] == pytest.approx(expected, rel=1e-10)


def test_share_within_set_update_and_average():
    rng = np.random.default_rng(4)
    d, s = 8, 3
    X = rng.standard_normal((d, s))
    target = rng.standard_normal(d)
    P = experts.projector(X)
    models = rng.standard_normal((1, 4, d))
    in_set = np.array([[True, False, True, True]])
    selected = np.array([2])

    def learn(w):
        return (P @ (target - w).T).T

    updated = models.copy()
    shared = experts.share_within_set("update", updated, in_set, selected, learn)
    assert shared.tolist() == [True]
    for k in (0, 3):  # the other members learned the task by Eq. (5) ...
        np.testing.assert_allclose(updated[0, k], models[0, k] + P @ (target - models[0, k]))
    np.testing.assert_array_equal(updated[0, [1, 2]], models[0, [1, 2]])  # ... the rest stayed put

    averaged = models.copy()
    experts.share_within_set("average", averaged, in_set, selected, learn)
    mean = models[0, [0, 2, 3]].mean(axis=0)
    for k in (0, 2, 3):
        np.testing.assert_allclose(averaged[0, k], mean)
    np.testing.assert_array_equal(averaged[0, 1], models[0, 1])

    alone = models.copy()
    assert not experts.share_within_set("update", alone, np.array([[False, False, True, False]]), selected, learn).any()
    np.testing.assert_array_equal(alone, models)
    with pytest.raises(ValueError, match="'copy'"):
        experts.share_within_set("copy", models.copy(), in_set, selected, learn)
