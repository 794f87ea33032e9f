"""The single expert under Definition 1 features: exact moments and expectations (moecl.theory.definition1)."""

import numpy as np
import pytest

import moecl
from moecl import theory
from moecl.theory import definition1


def _sampled_projectors(v, s, draws, rng):
    """Projectors onto span[v, g_2, ..., g_s] (Definition 1: one signal column, s - 1 Gaussian columns)."""
    d = v.size
    X = rng.standard_normal((draws, d, s))
    X[:, :, 0] = v
    Q, _ = np.linalg.qr(X)
    return Q @ np.swapaxes(Q, -1, -2)


@pytest.mark.parametrize("d, s", [(6, 3), (5, 1), (7, 6)])
def test_conditional_moments_match_sampled_projectors(d, s):
    rng = np.random.default_rng(0)
    V = rng.standard_normal((2, d))
    A = rng.standard_normal((d, d))
    moments = definition1.Definition1Moments(V, s)
    draws = 20000
    for n in range(2):
        P = _sampled_projectors(V[n], s, draws, rng)
        I_P = np.eye(d) - P
        samples = {
            "mean": P,
            "sandwich": P @ A @ P,
            "complement_sandwich": I_P @ A @ I_P,
            "mixed": I_P @ A @ P,
        }
        exact = {
            "mean": moments.mean[n],
            "sandwich": moments.sandwich(A)[n],
            "complement_sandwich": moments.complement_sandwich(A)[n],
            "mixed": moments.mixed(A)[n],
        }
        for name, sample in samples.items():
            mean = sample.mean(axis=0)
            se = sample.std(axis=0, ddof=1) / np.sqrt(draws)
            z = np.abs(mean - exact[name]) / np.maximum(se, 1e-12)
            assert np.all((z < 5.5) | (np.abs(mean - exact[name]) < 1e-9)), (name, n, z.max())


def test_mean_projector():
    V = np.random.default_rng(1).standard_normal((3, 8))
    moments = definition1.Definition1Moments(V, 3)
    v = V / np.linalg.norm(V, axis=1, keepdims=True)
    for n in range(3):
        assert moments.mean[n] @ v[n] == pytest.approx(v[n])  # the own signal is always learned
        assert np.trace(moments.mean[n]) == pytest.approx(3)  # E[trace P] = s


def test_first_round_is_the_one_round_formula():
    """E[G_1] = r' mean_n (||w_n||^2 - (w_n . v_hat_n)^2), r' = 1 - (s-1)/(d-1) (book: single expert)."""
    config = moecl.Config(M=1, d=12, s=4, N=3)
    pool = moecl.make_pool(config, np.random.default_rng(2))
    out = definition1.expected_errors(pool.W, pool.V, config.s, 3)
    v_hat = pool.V / np.linalg.norm(pool.V, axis=1, keepdims=True)
    r_prime = 1 - (config.s - 1) / (config.d - 1)
    expected = r_prime * np.mean(np.sum(pool.W**2, axis=1) - np.sum(pool.W * v_hat, axis=1) ** 2)
    assert out["generalization"][0] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(out["forgetting"][0]) and np.all(np.isfinite(out["forgetting"][1:]))


def test_batch_equals_one_pool_at_a_time_and_scale_of_signals_does_not_matter():
    config = moecl.Config(M=1, d=10, s=3, N=4)
    rng = np.random.default_rng(3)
    pools = [moecl.make_pool(config, rng) for _ in range(3)]
    W, V = np.stack([p.W for p in pools]), np.stack([p.V for p in pools])
    batch = definition1.expected_errors(W, V, config.s, 15)
    for k, pool in enumerate(pools):
        one = definition1.expected_errors(pool.W, 7.0 * pool.V, config.s, 15)
        for name in theory.METRICS:
            np.testing.assert_allclose(batch[name][k], one[name], rtol=1e-12)


@pytest.mark.parametrize("d, s, N", [(8, 3, 3), (6, 1, 2)])
def test_engine_matches_the_recursion(d, s, N):
    """Algorithm 1 with one expert and Definition 1 features against the exact expectation."""
    T, R = 12, 3000
    config = moecl.Config(M=1, d=d, s=s, N=N, T=T, features="definition1")
    run = moecl.simulate(config, replicates=R, seed=4)
    exact = definition1.expected_errors(run.pool.W, run.pool.V, s, T)
    rows = theory.z_scores(run, exact, (1, 2, 5, T))
    assert all(abs(row["z"]) < 5 for row in rows), rows
    # and the check has power: Proposition 4 is rejected somewhere
    prop4 = theory.curves(run.pool.W, 1 - s / d, M=1, T=T, T1=0)
    assert max(abs(row["z"]) for row in theory.z_scores(run, prop4, (2, 5, T))) > 5


def test_bad_inputs():
    W = np.zeros((2, 5))
    with pytest.raises(ValueError, match="must both be"):
        definition1.expected_errors(W, np.ones((3, 5)), 2, 4)
    with pytest.raises(ValueError, match="non-zero"):
        definition1.expected_errors(W, np.zeros((2, 5)), 2, 4)
    with pytest.raises(ValueError, match="smaller than d"):
        definition1.expected_errors(W, np.ones((2, 5)), 5, 4)
