"""Summaries across replicates: mean and standard error, z-scores, routing purity."""

from types import SimpleNamespace

import numpy as np
import pytest

from moecl.metrics import Z95, mean_se, routing_purity, z_score


def test_mean_se_matches_the_definition_and_skips_nan():
    values = np.array([[1.0, np.nan], [2.0, 4.0], [6.0, 8.0]])
    mean, se = mean_se(values)
    assert mean[0] == pytest.approx(3.0) and se[0] == pytest.approx(np.std([1, 2, 6], ddof=1) / np.sqrt(3))
    assert mean[1] == pytest.approx(6.0) and se[1] == pytest.approx(np.std([4, 8], ddof=1) / np.sqrt(2))
    mean, se = mean_se(np.array([[np.nan, 1.0], [np.nan, 2.0]]))
    assert np.isnan(mean[0]) and np.isfinite(mean[1])
    with pytest.raises(ValueError, match="at least two replicates, got 1"):
        mean_se(np.ones((1, 5)))


def test_z_score():
    assert z_score(1.2, 0.1, 1.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="se=0.0"):
        z_score(1.0, 0.0, 1.0)
    assert Z95 == pytest.approx(1.96, abs=1e-3)


def _fake_result(tasks, experts, closest, M):
    tasks, experts = np.atleast_2d(tasks), np.atleast_2d(experts)
    T = tasks.shape[1]
    closest = np.broadcast_to(np.asarray(closest)[:, None, :], (tasks.shape[0], T, M))
    return SimpleNamespace(config=SimpleNamespace(T=T, M=M), tasks=tasks, experts=experts, closest_truth=closest)


def test_routing_purity_by_hand():
    # Expert sets: experts 0, 1 serve truth 0; expert 2 serves truth 1.
    result = _fake_result(tasks=[0, 1, 0, 1], experts=[1, 2, 2, 0], closest=[[0, 0, 1]], M=3)
    purity, random = routing_purity(result, window=4)
    assert purity == pytest.approx(2 / 4)  # rounds 1 and 2 hit the task's own set
    assert random == pytest.approx(np.mean([2 / 3, 1 / 3, 2 / 3, 1 / 3]))
    purity, _ = routing_purity(result, window=2, end=2)
    assert purity == pytest.approx(1.0)
    per, rand = routing_purity(result, window=4, per_replicate=True)
    assert per.shape == rand.shape == (1,)


def test_routing_purity_rejects_bad_windows():
    result = _fake_result(tasks=[0, 1, 0], experts=[0, 1, 0], closest=[[0, 1]], M=2)
    with pytest.raises(ValueError, match="window=0"):
        routing_purity(result, window=0)
    with pytest.raises(ValueError, match="window=4"):
        routing_purity(result, window=4)
    with pytest.raises(ValueError, match="end=5"):
        routing_purity(result, window=1, end=5)


def test_specialisation_score_says_no_where_it_should():
    from moecl.metrics import routing_concentration, routing_counts, specialisation_chance, specialisation_score

    rng = np.random.default_rng(0)
    tasks = rng.integers(0, 5, 400)
    one_network = np.zeros_like(tasks)
    assert specialisation_score(routing_counts(tasks, one_network, 5, 4)) == 0.0
    assert routing_concentration(tasks, one_network, 5) == 1.0  # concentration cannot tell
    random = rng.integers(0, 4, 400)
    chance = specialisation_chance(tasks, random, 5, 4, permutations=50)
    assert specialisation_score(routing_counts(tasks, random, 5, 4)) < 3 * chance < 0.05
    shared = np.array([0, 1, 2, 3, 2])[tasks]
    assert specialisation_score(routing_counts(tasks, shared, 5, 4)) < 1  # types 2 and 4 share expert 2
    own = np.array([0, 1, 2, 3, 4])[tasks]
    assert specialisation_score(routing_counts(tasks, own, 5, 5)) == 1.0
    # a two-way split of balanced types: log 2 / log N (vehicles / animals on CIFAR-10's five types)
    split = np.array([0, 0, 1, 1, 1])[tasks]
    two_way = routing_counts(tasks, split, 5, 4)
    assert 0.3 < specialisation_score(two_way) < 0.5
    with pytest.raises(ValueError, match="experts must lie"):
        routing_counts(tasks, own, 5, 4)
