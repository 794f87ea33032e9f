"""Tests of moecl.similarity: anisotropic features, Sigma-weighted forgetting (book chapter: similarity).

Monte Carlo tolerance: |z| < 4 (`moecl.theory.Z_MAX`), with z the Monte Carlo mean
minus the prediction over the combined standard error sqrt(se_mc^2 + se_moments^2),
where se_moments is the Monte Carlo error of the estimated projector moments
(`similarity.with_se`, batch means). Every check below prints its z-scores.
"""

import numpy as np
import pytest
import sympy as sp

from moecl.theory import similarity as sim
from moecl import theory
from moecl.metrics import mean_se
from moecl.tasks import feature_variances
from moecl.theory import SYMBOLS, Z_MAX

D_, S_ = 20, 6  # d, s
KAPPA = 20.0
MOMENT_DRAWS = 50_000


@pytest.fixture(scope="module")
def variances():
    return feature_variances(D_, KAPPA)


@pytest.fixture(scope="module")
def moments(variances):
    return sim.projector_moments(variances, S_, draws=MOMENT_DRAWS, batches=10, seed=0)


@pytest.fixture(scope="module")
def pool():
    return np.random.default_rng(3).standard_normal((4, D_))


def _z(mc_samples, predicted, predicted_se):
    mean, se = mean_se(mc_samples)
    return (mean - predicted) / np.sqrt(se**2 + predicted_se**2), se


# --------------------------------------------------------------------------- Sigma = I


def test_isotropic_recursion_is_proposition_4(pool):
    """With Sigma = I the recursion gives the closed forms of moecl.theory exactly."""
    T = 25
    moments = sim.projector_moments(np.ones(D_), S_)
    assert moments.exact and moments.draws == 0
    q = theory.pool_quantities(pool)
    values = {SYMBOLS.r: 1 - S_ / D_, SYMBOLS.S: q["S"], SYMBOLS.D: q["D"]}
    t = np.arange(1, T + 1, dtype=float)
    G = sp.lambdify(SYMBOLS.T, theory.single_expert_generalization().subs(values))(t)
    F = sp.lambdify(SYMBOLS.T, theory.single_expert_forgetting().subs(values))(t[1:])
    for metric in sim.METRICS:
        out = sim.expected_errors(pool, moments, T, metric=metric)
        np.testing.assert_allclose(out["generalization"], G, rtol=1e-10)
        np.testing.assert_allclose(out["forgetting"][1:], F, rtol=1e-10)
        assert np.isnan(out["forgetting"][0])
    # and the Sigma-weighted pool quantities are the Euclidean ones
    weighted = sim.weighted_pool_quantities(pool, np.ones(D_))
    assert weighted["S"] == pytest.approx(q["S"]) and weighted["D"] == pytest.approx(q["D"])


def test_isotropic_pair_forgetting_is_euclidean():
    """Sigma = I: E[P P] = (s/d) I, so the pair formula is (s/d) ||delta||^2 exactly."""
    delta = np.random.default_rng(0).standard_normal((5, D_))
    moments = sim.projector_moments(np.full(D_, 2.0), S_)  # Sigma proportional to I: same span law
    np.testing.assert_allclose(
        sim.pair_forgetting(delta, moments, metric="euclidean"), sim.euclidean_pair_forgetting(delta, S_), rtol=1e-12
    )


def test_monte_carlo_moments_match_exact_isotropic_values():
    """The Monte Carlo estimator, run at Sigma = I, agrees with the exact moments (|z| < 4)."""
    exact = sim.isotropic_moments(D_, S_)
    estimate = sim.projector_moments(np.ones(D_), S_, draws=20_000, batches=10, seed=1, method="monte_carlo")
    off = ~np.eye(D_, dtype=bool)
    summaries = {
        "E[P_11]": lambda m: m.mean_diag[0],  # (the mean over i is s/d in every draw)
        "E[P_ii^2]": lambda m: np.diag(m.cross).mean(),
        "E[P_ii P_kk]": lambda m: m.same[off].mean(),
        "E[P_ik^2]": lambda m: m.cross[off].mean(),
    }
    for name, summary in summaries.items():
        value, se = sim.with_se(summary, estimate)
        z = (value - summary(exact)) / se
        print(f"{name}: Monte Carlo {value:.6f} +- {se:.6f}, exact {summary(exact):.6f}, z = {z:+.2f}")
        assert abs(z) < Z_MAX


def test_moment_identities(moments):
    """P^2 = P and trace P = s hold draw by draw: sum_k E[P_ik^2] = E[P_ii], sum_k E[P_ii P_kk] = s E[P_ii]."""
    np.testing.assert_allclose(moments.cross.sum(axis=1), moments.mean_diag, atol=1e-12)
    np.testing.assert_allclose(moments.same.sum(axis=1), S_ * moments.mean_diag, atol=1e-11)
    assert moments.mean_diag.sum() == pytest.approx(S_)
    # the span leans towards the high-variance coordinates
    assert np.all(np.diff(moments.mean_diag) < 0)


def test_sandwich_maps_against_direct_monte_carlo(variances, moments):
    """E[P A P], E[(I-P) A (I-P)], E[(I-P) A P] from (eq-sim-sandwich) against averages over fresh projectors."""
    rng = np.random.default_rng(5)
    A = rng.standard_normal((D_, D_))  # not symmetric: checks the A^T term
    B = rng.standard_normal((D_, D_))  # a random linear functional tr(B^T .)
    P = sim.sample_projectors(variances, S_, 20_000, np.random.default_rng(6))
    Q = np.eye(D_) - P
    direct = {
        "sandwich": P @ A @ P,
        "complement_sandwich": Q @ A @ Q,
        "mixed": Q @ A @ P,
    }
    for name, samples in direct.items():
        projected = np.einsum("ij,bij->b", B, samples)
        value, se_moments = sim.with_se(lambda m: np.sum(B * getattr(m, name)(A)), moments)
        z, se = _z(projected[:, None], value, se_moments)
        print(f"{name}: z = {z[0]:+.2f} (se {se[0]:.4f}, se of the moments {se_moments:.4f})")
        assert abs(z[0]) < Z_MAX


# --------------------------------------------------------------------------- the recursion


@pytest.mark.parametrize("metric", sim.METRICS)
def test_recursion_against_simulation(pool, variances, moments, metric):
    """E[G_t], E[F_t] of (eq-sim-recursion) against a numpy Monte Carlo of Eq. (5), kappa = 20."""
    T, R = 30, 3000
    predicted, predicted_se = sim.with_se(
        lambda m: np.stack([sim.expected_errors(pool, m, T, metric)[k] for k in theory.METRICS]), moments
    )
    mc = sim.simulate_single_expert(pool, variances, S_, T, R, seed=11, metric=metric)
    for row, name in enumerate(theory.METRICS):
        for t in (1, 2, 5, 10, 30):
            if name == "forgetting" and t == 1:
                continue
            z, se = _z(mc[name][:, t - 1 : t], predicted[row, t - 1], predicted_se[row, t - 1])
            print(f"{metric} {name} t={t}: predicted {predicted[row, t - 1]:.4f}, se {se[0]:.4f}, "
                  f"se of the moments {predicted_se[row, t - 1]:.5f}, z = {z[0]:+.2f}")
            assert abs(z[0]) < Z_MAX
    # the check has power: the isotropic closed form (which ignores Sigma) is far off
    if metric == "sigma":
        iso = sim.expected_errors(pool, sim.isotropic_moments(D_, S_), T, "euclidean")["forgetting"][-1]
        z_iso, _ = _z(mc["forgetting"][:, -1:], iso, 0.0)
        print(f"isotropic closed form at t={T}: z = {z_iso[0]:+.1f}")
        assert abs(z_iso[0]) > 10


def test_mean_and_moments_about_u(pool, variances, moments):
    """E[w_T] and E[(w_T - u)^T Sigma (w_T - u)] for a fixed u against the simulated final models."""
    T, R = 8, 3000
    run = sim.expected_moments(pool, moments, T)
    mc = sim.simulate_single_expert(pool, variances, S_, T, R, seed=12)["final"]
    u = np.random.default_rng(13).standard_normal(D_)
    direction = np.random.default_rng(14).standard_normal(D_)

    def predictions(m):
        out = sim.expected_moments(pool, m, T)
        about = sim.moments_about(u, out["mean"][-1], out["second"][-1])
        return np.array([out["mean"][-1] @ direction, np.sum(variances * np.diag(about))])

    value, value_se = sim.with_se(predictions, moments)
    assert np.allclose(value[0], run["mean"][-1] @ direction)
    samples = np.stack([mc @ direction, np.sum(variances * (mc - u) ** 2, axis=1)], axis=1)
    z, _ = _z(samples, value, value_se)
    print(f"projection of the mean: z = {z[0]:+.2f}; Sigma-weighted second moment about u: z = {z[1]:+.2f}")
    assert np.all(np.abs(z) < Z_MAX)


# --------------------------------------------------------------------------- pairs


def test_pair_forgetting_against_simulation(variances, moments):
    """delta^T E[P Sigma P] delta (eq-sim-pair) against learning task b once from w_a."""
    deltas = np.random.default_rng(7).standard_normal((3, D_))
    value, value_se = sim.with_se(lambda m: sim.pair_forgetting(deltas, m), moments)
    samples = sim.simulate_pair_forgetting(deltas, variances, S_, draws=20_000, seed=8)
    z, _ = _z(samples, value, value_se)
    print("pair forgetting z-scores:", np.round(z, 2))
    assert np.all(np.abs(z) < Z_MAX)


def test_counterexample_euclidean_ranking_is_reversed(variances, moments):
    """Two task pairs: the Euclidean gap ranks them one way, Sigma-weighted gap and actual forgetting the other."""
    low, high = np.zeros(D_), np.zeros(D_)
    low[-1] = 2.0  # pair 1: a large gap along the lowest-variance coordinate
    high[0] = 1.0  # pair 2: a small gap along the highest-variance coordinate
    deltas = np.stack([low, high])
    euclidean = np.sum(deltas**2, axis=1)
    weighted = sim.weighted_gap(deltas, variances)
    assert euclidean[0] > euclidean[1]
    assert weighted[0] < weighted[1]
    # one learning step: paired simulation (same projectors for both pairs)
    samples = sim.simulate_pair_forgetting(deltas, variances, S_, draws=5_000, seed=9)
    difference = samples[:, 1] - samples[:, 0]
    mean, se = mean_se(difference[:, None])
    print(f"forgetting(pair 2) - forgetting(pair 1) = {mean[0]:.4f} +- {se[0]:.4f} (z = {mean[0] / se[0]:+.1f}); "
          f"Euclidean prediction {sim.euclidean_pair_forgetting(deltas, S_)}")
    assert mean[0] / se[0] > 10
    predicted = sim.pair_forgetting(deltas, moments)
    assert predicted[1] > predicted[0]
    # many rounds: a single expert alternating between the two truths of each pair
    T, R = 20, 1000
    finals = []
    for delta in deltas:
        W = np.stack([np.zeros(D_), delta])
        F = sim.simulate_single_expert(W, variances, S_, T, R, seed=10)["forgetting"][:, -1]
        finals.append(F)
        predicted_F, predicted_se = sim.with_se(lambda m: sim.expected_errors(W, m, T)["forgetting"][-1], moments)
        z, _ = _z(F[:, None], predicted_F, predicted_se)
        print(f"F_{T} for the pair with |delta|^2 = {delta @ delta:.0f}: z = {z[0]:+.2f}")
        assert abs(z[0]) < Z_MAX
    gap, gap_se = mean_se((finals[1] - finals[0])[:, None])
    print(f"F_T(pair 2) - F_T(pair 1) = {gap[0]:.4f} +- {gap_se[0]:.4f}")
    assert gap[0] / gap_se[0] > 10


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs(pool, moments):
    with pytest.raises(ValueError, match="anisotropy=0.5"):
        feature_variances(D_, 0.5)
    with pytest.raises(ValueError, match="variances"):
        sim.check_variances(-np.ones(D_))
    with pytest.raises(ValueError, match=r"variances has shape \(3,\)"):
        sim.weighted_gaps(pool, np.ones(3))
    with pytest.raises(ValueError, match="s=20"):
        sim.projector_moments(np.ones(D_), 20)
    with pytest.raises(ValueError, match="draws=1001"):
        sim.projector_moments(np.arange(1.0, D_ + 1), S_, draws=1001, batches=10)
    with pytest.raises(ValueError, match="method='exact'"):
        sim.projector_moments(np.ones(D_), S_, method="exact")
    with pytest.raises(ValueError, match=r"delta has shape \(2, 5\)"):
        sim.pair_forgetting(np.ones((2, 5)), moments)
    with pytest.raises(ValueError, match="metric='manhattan'"):
        sim.expected_errors(pool, moments, 5, metric="manhattan")
    with pytest.raises(ValueError, match="d=20"):
        sim.expected_errors(np.ones((3, 10)), moments, 5)
    with pytest.raises(ValueError, match="T=0"):
        sim.expected_errors(pool, moments, 0)
    with pytest.raises(ValueError, match="replicates=1"):
        sim.simulate_single_expert(pool, np.ones(D_), S_, 5, 1)
