"""Drift and re-opening (book/drift.md): the windowed re-opening rule,
its agreement with the plain oracle, and the registered ``drift`` experiment."""

import numpy as np
import pytest

import moecl
from moecl import gate
from moecl.experiments import DRIFT_RULES, DRIFT_SCALES, EXPERIMENTS, drift_round, run_experiment, windowed_mean
from moecl.reference import simulate_one
from same_records import assert_same_records
from moecl.results import STATISTICS

R, T = 3, 40  # tiny


def _feed(rule, changes, terminated, threshold=1.5, k=2):
    state = rule.initial_state(len(terminated), moecl.Config(reopen_patience=k))
    fired = []
    for change in changes:
        state, reopen = rule.update(state, np.array(terminated), np.array(change, dtype=float), threshold, k)
        fired.append(reopen.copy())
    return state, np.array(fired)


def test_window_rule_fires_when_the_mean_of_the_last_k_changes_exceeds_the_threshold():
    rule = gate.REOPEN_RULES["window"]
    # k = 3, threshold 0.5: the first window [0.2, 0.2, 0.9] has mean 0.433; the next [0.2, 0.9, 0.9] 0.667
    state, fired = _feed(rule, [[0.2, 0.2], [0.2, 0.2], [0.9, 0.2], [0.9, 0.2]], [True, True], threshold=0.5, k=3)
    np.testing.assert_array_equal(fired[:, 0], [False, False, False, True])
    assert not fired[:, 1].any()
    assert state.frozen[0] == 0 and state.frozen[1] == 4  # memory cleared on re-opening only
    # no decision before k frozen rounds, however large the changes
    _, fired = _feed(rule, [[5.0], [5.0]], [True], threshold=0.5, k=3)
    assert not fired.any()
    # strictly above: a mean equal to the threshold does not fire
    _, fired = _feed(rule, [[0.5], [0.5], [0.5]], [True], threshold=0.5, k=3)
    assert not fired.any()


def test_window_rule_averages_away_single_large_changes_and_ignores_a_training_gate():
    rule = gate.REOPEN_RULES["window"]
    spikes = [[0.05], [2.0], [0.05], [0.05]] * 5  # a large change every 4th round, mean 0.54
    _, fired = _feed(rule, spikes, [True], threshold=0.6, k=8)
    assert not fired.any()
    _, strikes = _feed(gate.REOPEN_RULES["locality"], spikes, [True], threshold=0.6, k=1)
    assert strikes.any()  # the strike rule with patience 1 fires on the first spike
    state, fired = _feed(rule, [[9.0]] * 5, [False], threshold=0.5, k=2)
    assert not fired.any() and state.frozen[0] == 0


def test_window_rule_in_the_engine_equals_the_oracle():
    """Same routing, re-openings and metrics as the plain loop. (Kept short: over hundreds of
    training rounds the rounding differences of the two gate gradients grow past 1e-9 in theta.)"""
    config = moecl.Config(M=8, T=220, sigma0=0.3, drift_round=100, drift_count=2,
                          reopen="window", reopen_threshold=0.4, reopen_patience=10)
    result = moecl.simulate(config, replicates=[0, 1, 2], seed=7)
    restarts = np.sum(np.diff(result.gate_trained.astype(int), axis=1) == 1, axis=1)
    assert np.all(restarts >= 1)  # the case is not vacuous: every gate re-opens
    for k in range(3):
        oracle = simulate_one(config, seed=7, replicate=k)
        assert_same_records(result, oracle, ["gate_trained", "experts", "drift_generalization", "final_theta"],
                            row=k, rtol=1e-7, atol=1e-9)


def test_told_rule_reopens_exactly_after_the_drift_round_as_the_oracle_does():
    config = moecl.Config(M=8, T=200, sigma0=0.3, drift_round=120, drift_count=2, reopen="at-drift")
    result = moecl.simulate(config, replicates=[0, 1], seed=4)
    frozen = moecl.simulate(config.replace(reopen="never"), replicates=[0, 1], seed=4)
    assert np.all(frozen.termination_round < 120)  # terminated before the drift...
    np.testing.assert_array_equal(result.gate_trained[:, :120], frozen.gate_trained[:, :120])
    assert np.all(result.gate_trained[:, 120])  # ...and training again in round T_d + 1
    for k in range(2):
        oracle = simulate_one(config, seed=4, replicate=k)
        assert_same_records(result, oracle, ["gate_trained", "final_theta"], row=k, rtol=1e-7, atol=1e-9)
    no_drift = moecl.simulate(config.replace(drift_round=None), replicates=[0], seed=4)
    assert no_drift.termination_round[0] > 0 and not no_drift.gate_trained[0, 120:].any()


def test_window_rule_on_a_gate_that_never_terminates_changes_nothing():
    base = moecl.Config(M=6, T=150, sigma0=0.3, termination="none")
    plain = moecl.simulate(base, replicates=2, seed=3)
    windowed = moecl.simulate(base.replace(reopen="window", reopen_patience=5), replicates=2, seed=3)
    np.testing.assert_array_equal(plain.final_theta, windowed.final_theta)
    np.testing.assert_array_equal(plain.gate_trained, windowed.gate_trained)


def test_windowed_mean_ignores_nan_and_ends_at_T():
    values = np.array([[1.0, np.nan, 3.0, 5.0, np.nan, np.nan, 2.0]])
    ends, means = windowed_mean(values, 3)
    np.testing.assert_array_equal(ends, [3, 5, 7])
    np.testing.assert_allclose(means[0, :2], [3.0, 5.0])
    assert np.isnan(windowed_mean(np.full((1, 4), np.nan), 2)[1]).all()


@pytest.fixture(scope="module")
def tiny():
    return run_experiment("drift", scale="ci", seed=5, replicates=R, rounds=T)


def test_drift_experiment_arrays(tiny):
    header, arrays = tiny
    assert header["labels"] == list(DRIFT_RULES)
    assert header["description"] == EXPERIMENTS["drift"].description
    assert int(arrays["drift_round"]) == drift_round(T) == 8
    K = arrays["purity_window_end"].shape[0]
    assert arrays["purity_window_end"][-1] == T
    for label in DRIFT_RULES:
        config = header["configs"][label]
        assert config["drift_round"] == 8 and config["reopen"] == DRIFT_RULES[label]["reopen"]
        for key, shape in [("generalization", (T,)), ("drift_generalization", (T,)),
                           ("gate_trained", (T,)), ("purity_new", (K,)), ("purity_old", (K,))]:
            for stat in STATISTICS:
                assert arrays[f"{label}/{key}/{stat}"].shape == shape, (label, key, stat)
        assert arrays[f"{label}/reopenings"].shape == (R,)
        assert arrays[f"{label}/termination_round"].shape == (R,)
        assert arrays[f"{label}/reopenings_before_drift"].shape == (R,)
        assert arrays[f"{label}/purity_before_drift"].shape == (R,)
        assert np.all(np.isnan(arrays[f"{label}/drift_generalization/mean"][:8]))
        assert np.all(np.isfinite(arrays[f"{label}/drift_generalization/mean"][8:]))
        gained = f"{label}/drift_gain/mean" in arrays
        assert gained == (label != "frozen")
    # before the drift no task of a new truth exists: the first windows' new-truth purity is NaN
    assert np.isnan(arrays["frozen/purity_new/mean"][0])


def test_drift_experiment_bad_scale():
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        run_experiment("drift", scale="huge")


def test_stored_drift_results_match_the_registry(tiny, stored_paper_results, same_setting):
    """results/drift-paper-seed0.npz exists and is what the current code would write."""
    paper = DRIFT_SCALES["paper"]
    header, arrays, path = stored_paper_results("drift", paper.replicates, paper.rounds)
    assert paper.rounds >= 10_000
    fresh_header, fresh_arrays = tiny
    assert header["labels"] == fresh_header["labels"]
    for label, config in header["configs"].items():
        fresh = dict(fresh_header["configs"][label], T=paper.rounds, drift_round=drift_round(paper.rounds))
        assert same_setting(config, fresh), f"{path.name}: setting {label} differs from the registry's"
    assert set(arrays) == set(fresh_arrays)
    assert arrays["rounds"].shape == (paper.rounds,)
    assert path.stat().st_size < 3_000_000
