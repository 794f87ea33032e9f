"""Tests of moecl.dynamics: expert sets, gate gaps, load within sets, replayed gate inputs."""

from types import SimpleNamespace

import numpy as np
import pytest

import moecl
from moecl import dynamics
from moecl.metrics import routing_purity


def fake_result(tasks, experts, closest_truth, gate_values=None, N=2, M=None):
    """A minimal stand-in for SimulationResult with hand-chosen records."""
    tasks = np.asarray(tasks)
    R, T = tasks.shape
    closest_truth = np.asarray(closest_truth)
    M = closest_truth.shape[-1] if M is None else M
    if gate_values is None:
        gate_values = np.zeros((R, T, M))
    config = moecl.Config(T=T, M=M, N=N, d=4, s=2)
    return SimpleNamespace(config=config, tasks=tasks, experts=np.asarray(experts),
                           closest_truth=closest_truth, gate_values=np.asarray(gate_values, dtype=float))


@pytest.fixture(scope="module")
def run():
    config = moecl.Config(T=160, M=6, N=3)
    return moecl.simulate(config, replicates=[2, 5], seed=11)


def test_replay_recovers_tasks_and_the_frozen_gate(run):
    for k in range(2):
        xbar, tasks = dynamics.replay_gate_inputs(run, k)
        assert np.array_equal(tasks, run.tasks[k])
        T2 = int(run.termination_round[k])
        assert T2 > run.config.T1
        h = xbar @ run.final_theta[k].T  # Eq. (1) with the final gate
        # From T2 on the gate no longer moves: the recorded gate values are the final gate's.
        assert np.allclose(h[T2 - 1:], run.gate_values[k, T2 - 1:], atol=1e-12, rtol=0)
        # One round earlier the gate still took a step, so they differ.
        assert np.max(np.abs(h[T2 - 2] - run.gate_values[k, T2 - 2])) > 1e-6


def test_replay_rejects_bad_replicate(run):
    with pytest.raises(ValueError, match="k=2"):
        dynamics.replay_gate_inputs(run, 2)


def test_expert_sets_and_agreement():
    closest = np.array([[[0, 0, 0], [0, 1, 1], [1, 1, 0]]])  # (R=1, T=3, M=3)
    result = fake_result(np.zeros((1, 3), int), np.zeros((1, 3), int), closest)
    assert np.array_equal(dynamics.expert_sets(result), [[1, 1, 0]])
    assert np.array_equal(dynamics.expert_sets(result, 2), [[0, 1, 1]])
    assert np.allclose(dynamics.set_agreement(result, 1), [1 / 3])
    assert np.allclose(dynamics.set_agreement(result, 2), [1 / 3])
    assert np.allclose(dynamics.set_agreement(result, 3), [1.0])
    with pytest.raises(ValueError, match="t=4"):
        dynamics.expert_sets(result, 4)
    with pytest.raises(ValueError, match="t=0"):
        dynamics.set_agreement(result, 0)


def test_set_margin_and_gate_range_by_hand():
    # Round 1: task 0, set {0, 1}: best inside 0.5, best outside 0.2 -> 0.3.
    # Round 2: task 1, set {2}: inside 0.1, outside max(0.4, -1) = 0.4 -> -0.3.
    # Round 3: task 1 but no expert serves truth 1 -> NaN.
    h = np.array([[[0.5, 0.1, 0.2], [0.4, -1.0, 0.1], [0.0, 0.3, 0.7]]])
    closest = np.array([[[0, 0, 1], [0, 0, 1], [0, 0, 0]]])
    result = fake_result([[0, 1, 1]], [[0, 2, 2]], closest, h)
    margin = dynamics.set_margin(result)
    assert np.allclose(margin[0, :2], [0.3, -0.3])
    assert np.isnan(margin[0, 2])
    # With the sets of round 1 fixed, round 3 (task 1, set {2}) has margin 0.7 - 0.3.
    assert np.allclose(dynamics.set_margin(result, sets_at=1)[0], [0.3, -0.3, 0.4])
    assert np.allclose(dynamics.gate_range(result)[0], [0.4, 1.4, 0.7])
    # Inside the set: round 1 {0, 1} -> 0.5 - 0.1; rounds 2-3 have fewer than two experts.
    spread = dynamics.within_set_spread(result)
    assert np.isclose(spread[0, 0], 0.4) and np.all(np.isnan(spread[0, 1:]))
    assert np.allclose(dynamics.within_set_spread(result, sets_at=1)[0, 0], 0.4)


def test_within_set_load_by_hand():
    # Truth 0 served by experts {0, 1}; truth 1 by expert {2} alone (skipped).
    closest = np.tile(np.array([0, 0, 1]), (1, 12, 1))
    tasks = np.array([[0] * 10 + [1, 1]])
    balanced = np.array([[0, 1] * 5 + [2, 2]])
    one_sided = np.array([[0] * 10 + [2, 2]])
    chi2, dof, top = dynamics.within_set_load(fake_result(tasks, balanced, closest), start=1)
    assert chi2[0] == 0 and dof[0] == 1 and top[0] == 1
    chi2, dof, top = dynamics.within_set_load(fake_result(tasks, one_sided, closest), start=1)
    assert chi2[0] == pytest.approx(10.0) and dof[0] == 1 and top[0] == pytest.approx(2.0)
    # Too few tasks in the window: nothing to test.
    chi2, dof, top = dynamics.within_set_load(fake_result(tasks, one_sided, closest), start=5)
    assert chi2[0] == 0 and dof[0] == 0 and np.isnan(top[0])


def test_within_set_load_is_chi_square_under_uniform_routing():
    # Tasks of truth 0 routed uniformly within a set of 3 experts: chi2 has mean dof.
    rng = np.random.default_rng(0)
    R, T = 400, 60
    closest = np.tile(np.array([0, 0, 0, 1]), (R, T, 1))
    tasks = np.zeros((R, T), int)
    chosen = rng.integers(0, 3, size=(R, T))
    chi2, dof, _ = dynamics.within_set_load(fake_result(tasks, chosen, closest), start=1)
    ratio = chi2 / dof
    se = ratio.std(ddof=1) / np.sqrt(R)
    # Mean of chi2/dof is 1; tolerance 4 Monte Carlo standard errors.
    assert abs(ratio.mean() - 1) < 4 * se


def test_within_set_load_rejects_bad_rounds():
    closest = np.zeros((1, 5, 2), int)
    result = fake_result(np.zeros((1, 5), int), np.zeros((1, 5), int), closest)
    with pytest.raises(ValueError, match="start=6"):
        dynamics.within_set_load(result, start=6)
    with pytest.raises(ValueError, match="end=9"):
        dynamics.within_set_load(result, start=1, end=9)


def test_purity_windows_match_routing_purity(run):
    ends, purity, random = dynamics.purity_windows(run, 40)
    assert np.array_equal(ends, [40, 80, 120, 160])
    p, q = routing_purity(run, 40, end=80, per_replicate=True)
    assert np.allclose(purity[:, 1], p) and np.allclose(random[:, 1], q)
    with pytest.raises(ValueError, match="window=0"):
        dynamics.purity_windows(run, 0)


def test_purity_windows_aligned_to_the_end(run):
    """``align="end"``: the last window ends at T (the alignment of the experiments' purity curves)."""
    T = run.config.T
    window = 45
    ends, purity, _ = dynamics.purity_windows(run, window, align="end")
    assert ends[-1] == T and np.all(np.diff(ends) == window) and ends[0] - window < window
    assert np.array_equal(purity[:, -1], routing_purity(run, window, end=T, per_replicate=True)[0])
    first, _, _ = dynamics.purity_windows(run, window, align="start", count=2)
    last, _, _ = dynamics.purity_windows(run, window, align="end", count=2)
    assert np.array_equal(first, [window, 2 * window]) and np.array_equal(last, [T - window, T])
    for bad in ({"align": "middle"}, {"count": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dynamics.purity_windows(run, window, **bad)
