"""Task streams: the pool, Definition 1 feature matrices, the isotropic variant, seeding."""

import numpy as np
import pytest

import moecl
from moecl import tasks


def test_pool_without_clusters():
    config = moecl.Config(d=20, N=4, sigma0=0.3)
    pool = tasks.make_pool(config, np.random.default_rng(0))
    assert pool.W.shape == pool.V.shape == (4, 20)
    # N <= d: feature signals are orthogonal, each of norm v_norm.
    np.testing.assert_allclose(pool.V @ pool.V.T, config.v_norm**2 * np.eye(4), atol=1e-10)
    S = np.mean(np.sum(pool.W**2, axis=1))
    assert pool.S == pytest.approx(S)
    gaps = [np.sum((a - b) ** 2) for a in pool.W for b in pool.W]
    assert pool.D == pytest.approx(np.mean(gaps))


def test_pool_with_more_truths_than_dimensions_has_unit_directions():
    config = moecl.Config(d=5, s=2, N=8, v_norm=2.0)
    pool = tasks.make_pool(config, np.random.default_rng(1))
    np.testing.assert_allclose(np.linalg.norm(pool.V, axis=1), 2.0)


def test_clusters():
    config = moecl.Config(N=6, M=3, K=3, sigma0=1.0, cluster_spread=0.01)
    pool = tasks.make_pool(config, np.random.default_rng(2))
    assert tasks.cluster_of(config).tolist() == [0, 1, 2, 0, 1, 2]
    within = np.linalg.norm(pool.W[0] - pool.W[3])
    between = np.linalg.norm(pool.W[0] - pool.W[1])
    assert within < 0.1 * between
    assert tasks.cluster_of(moecl.Config(N=3, M=3)).tolist() == [0, 1, 2]


@pytest.mark.parametrize("features", ["definition1", "isotropic"])
def test_feature_matrices(features):
    config = moecl.Config(d=10, s=4, N=3, beta=2.5, sigma_t=0.3, features=features)
    pool = tasks.make_pool(config, np.random.default_rng(3))
    draws = tasks.draw_rounds(config, [np.random.default_rng(4), np.random.default_rng(5)], 6)
    X = tasks.feature_matrices(config, pool.V, draws.tasks, draws.signal_pos, draws.noise.copy())
    assert X.shape == (2, 6, 10, 4)
    for r in range(2):
        for j in range(6):
            pos, n = draws.signal_pos[r, j], draws.tasks[r, j]
            for col in range(4):
                if features == "definition1" and col == pos:
                    np.testing.assert_allclose(X[r, j, :, col], 2.5 * pool.V[n])
                else:
                    np.testing.assert_allclose(X[r, j, :, col], 0.3 * draws.noise[r, j, col])


def test_draws_have_the_documented_distributions():
    config = moecl.Config(d=8, s=3, N=5, M=4)
    draws = tasks.draw_rounds(config, [np.random.default_rng(6)], 20000)
    counts = np.bincount(draws.tasks.ravel(), minlength=5)
    # Multinomial counts: each within 5 standard deviations of 20000/5.
    assert np.all(np.abs(counts - 4000) < 5 * np.sqrt(20000 * 0.2 * 0.8))
    assert draws.route_uniform.min() >= 0 and draws.route_uniform.max() < 1
    assert set(np.unique(draws.signal_pos)) == {0, 1, 2}


def test_seed_streams():
    pool_a, reps_a = tasks.seed_sequences(7, 3)
    pool_b, reps_b = tasks.seed_sequences(7, [2])
    assert reps_b[0].spawn_key == reps_a[2].spawn_key
    assert pool_a.spawn_key != reps_a[0].spawn_key
    np.testing.assert_array_equal(tasks.replicate_indices(3), [0, 1, 2])
    np.testing.assert_array_equal(tasks.replicate_indices((4, 1)), [4, 1])
    for bad in (0, -1, [], [0.5], "abc", True):
        with pytest.raises(ValueError, match="replicates="):
            tasks.replicate_indices(bad)


def test_round_blocks_cover_every_round():
    blocks = list(tasks.round_blocks(70))
    assert blocks[0] == (0, tasks.CHUNK)
    assert sum(length for _, length in blocks) == 70
    assert [start for start, _ in blocks] == list(range(0, 70, tasks.CHUNK))


def test_feature_variances():
    np.testing.assert_array_equal(tasks.feature_variances(5, 1.0), np.ones(5))
    v = tasks.feature_variances(20, 10.0)
    assert v.mean() == pytest.approx(1.0) and v.max() / v.min() == pytest.approx(10.0)
    assert np.all(np.diff(v) < 0)
    for bad, word in (({"d": 0}, "d=0"), ({"d": 3, "anisotropy": 0.9}, "anisotropy=0.9")):
        with pytest.raises(ValueError, match=word):
            tasks.feature_variances(**{"anisotropy": 1.0, **bad})


def test_anisotropic_noise_columns_have_covariance_sigma():
    config = moecl.Config(d=6, s=3, features="isotropic", sigma_t=1.0, anisotropy=8.0)
    rngs = [np.random.default_rng(k) for k in range(4)]
    draws = tasks.draw_rounds(config, rngs, 2000)
    Z = tasks.samples(config, np.zeros((config.N, config.d)), draws.tasks, draws.signal_pos, draws.noise)
    variances = Z.reshape(-1, config.d).var(axis=0)
    n = Z.size // config.d
    expected = tasks.feature_variances(6, 8.0)
    # the sample variance of n normals has SE sqrt(2/n) * variance
    assert np.all(np.abs(variances - expected) < 4 * np.sqrt(2 / n) * expected)


def test_drift_appends_new_truths_and_remaps_later_tasks():
    base = moecl.Config(N=4, d=20, T=100)
    drift = base.replace(drift_round=40, drift_count=2)
    pool = tasks.make_pool(base, np.random.default_rng(3))
    drifted = tasks.make_pool(drift, np.random.default_rng(3))
    assert drifted.W.shape == drifted.V.shape == (6, 20)
    np.testing.assert_array_equal(drifted.W[:4], pool.W)  # the old truths are the run without drift's
    np.testing.assert_allclose(drifted.V[:4], pool.V, atol=1e-12)
    np.testing.assert_allclose(drifted.V @ drifted.V.T, drift.v_norm**2 * np.eye(6), atol=1e-9)
    np.testing.assert_array_equal(tasks.active_truths(drift, 40), [0, 1, 2, 3])
    np.testing.assert_array_equal(tasks.active_truths(drift, 41), [4, 5, 2, 3])
    plain = tasks.draw_rounds(base, [np.random.default_rng(1)], 32, start=32)
    moved = tasks.draw_rounds(drift, [np.random.default_rng(1)], 32, start=32)
    rounds = 33 + np.arange(32)
    np.testing.assert_array_equal(moved.tasks[0, rounds <= 40], plain.tasks[0, rounds <= 40])
    np.testing.assert_array_equal(moved.tasks[0, rounds > 40], tasks.active_truths(drift, 41)[plain.tasks[0, rounds > 40]])
    np.testing.assert_array_equal(moved.noise, plain.noise)
    with pytest.raises(ValueError, match="N \\+ drift_count"):
        tasks.check_pool(drift, pool)
