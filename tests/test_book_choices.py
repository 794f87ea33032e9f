"""The book choices of book/choices.md are what the package does.

These were the page's executed asserts; they are identities the code enforces (defaults,
derived constants, hand-made inputs), so they are unit tests, not claims of the chapter
(book/choices.md, "How a check earns its place").
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import moecl
from moecl import experts, gate, tasks
from moecl.config import BOOK_CONSTANTS
from moecl.experiments import DRIFT_RULES, PURITY_WINDOWS
from moecl.metrics import routing_purity
from moecl.theory import phase_model


@pytest.fixture
def config():
    return moecl.Config()


def test_default_pool_has_orthogonal_signals_of_norm_sqrt_d(config):
    for seed in range(3):
        pool = moecl.make_pool(config, np.random.default_rng(seed))
        assert np.allclose(pool.V @ pool.V.T, config.d * np.eye(config.N))


def test_default_signal_dominates_the_gate_noise(config):
    signal = config.beta * config.v_norm
    noise = config.sigma_t * math.sqrt((config.s - 1) * config.d)
    assert config.v_norm == math.sqrt(config.d) and signal > 3 * noise


def test_constants_of_algorithm_1(config):
    assert BOOK_CONSTANTS == {"Gamma": 1.0, "lambda_": 1.0, "eta": 1.0, "alpha": 1.0}
    assert math.isclose(config.Gamma, config.sigma0**1.25) and math.isclose(config.lambda_, config.sigma0**1.25)
    assert math.isclose(config.eta, config.sigma0**0.5) and math.isclose(config.alpha, config.sigma0**0.5)
    assert config.T1 == math.ceil(config.M / config.eta)


def test_termination_flags_on_hand_made_gate_values():
    rule = gate.TERMINATION_RULES["gap"]
    flags = rule.initial_flags((4,))
    h = np.array([0.0, 0.005, 0.5, 1.0])
    Gamma, T1 = 0.01, 10
    flags, stop = rule.update(flags, h, np.array(0), t=T1, T1=T1, Gamma=Gamma)
    assert flags.all() and not stop  # t <= T1: no test yet
    flags, stop = rule.update(flags, h, np.array(0), t=T1 + 1, T1=T1, Gamma=Gamma)
    assert flags.tolist() == [False, False, True, True] and not stop
    flags, stop = rule.update(flags, np.array([0.0, 0.0, 1.0, 1.0]), np.array(2), t=T1 + 2, T1=T1, Gamma=Gamma)
    assert not flags.any() and stop  # every flag cleared: the gate stops
    _, never = gate.TERMINATION_RULES["none"].update(flags, h, np.array(0), t=T1 + 1, T1=T1, Gamma=Gamma)
    assert not never


def test_phase_model_routing_is_balanced_when_n_divides_m():
    Q2 = phase_model.default_routing(N=4, M=8)
    assert np.allclose(Q2.sum(axis=1), 1) and np.allclose((Q2 > 0).sum(axis=1), 2)
    assert np.allclose(Q2.mean(axis=0), 1 / 8)


def test_phase_model_routing_is_unbalanced_when_n_does_not_divide_m():
    Q2 = phase_model.default_routing(N=4, M=6)
    assert np.allclose(Q2.sum(axis=1), 1)
    assert sorted((Q2 > 0).sum(axis=1).tolist()) == [1, 1, 2, 2]
    assert not np.allclose(Q2.mean(axis=0), 1 / 6)


def test_routing_purity_counts_by_hand():
    run = moecl.simulate(moecl.Config(N=2, M=4, T=200), replicates=2, seed=0)
    window = run.config.T // PURITY_WINDOWS
    purity, random = routing_purity(run, window, per_replicate=True)
    for k in range(2):
        sets = run.closest_truth[k, -1]
        last = slice(run.config.T - window, run.config.T)
        by_hand = np.mean([sets[m] == n for n, m in zip(run.tasks[k, last], run.experts[k, last])])
        random_by_hand = np.mean([np.sum(sets == n) / run.config.M for n in run.tasks[k, last]])
        assert math.isclose(purity[k], by_hand) and math.isclose(random[k], random_by_hand)


def test_default_problem_size(config):
    defaults = {name: getattr(config, name) for name in ("d", "s", "N", "M", "T", "sigma0")}
    assert defaults == {"d": 20, "s": 6, "N": 4, "M": 8, "T": 1000, "sigma0": 0.1}


def test_alternatives_default_to_the_papers_mechanisms(config):
    assert (config.balance_loss, config.router, config.expert_update) == ("load_balance", "gate", "exact")
    pi = np.array([0.5, 0.3, 0.2])
    entropy = -np.sum(pi * np.log(pi))
    assert np.allclose(gate.BALANCE_LOSSES["entropy"](pi, None, 0.3, 7), 0.3 * pi * (np.log(pi) + entropy))


def test_anisotropic_variances_and_averaging_a_set(config):
    variances = tasks.feature_variances(20, 20.0)
    assert np.isclose(variances.mean(), 1.0) and np.isclose(variances[0] / variances[-1], 20.0)
    assert np.all(np.diff(variances) < 0) and np.all(tasks.feature_variances(20, 1.0) == 1.0)
    models = np.arange(12.0).reshape(1, 3, 4)
    experts.share_within_set("average", models, np.array([[True, True, False]]), np.array([0]), None)
    assert np.allclose(models[0, :2], [[2, 3, 4, 5]] * 2) and np.allclose(models[0, 2], [8, 9, 10, 11])
    assert (config.sharing, config.anisotropy, config.error_metric) == ("none", 1.0, "euclidean")


def test_drift_replaces_the_first_truths_and_the_window_rule_fires_on_the_mean(config):
    drifting = moecl.Config(T=100, drift_round=40, drift_count=2)
    assert drifting.pool_size == 6 and list(tasks.active_truths(drifting, 41)) == [4, 5, 2, 3]
    assert DRIFT_RULES["window"] == {"reopen": "window", "reopen_threshold": 0.15, "reopen_patience": 80}
    window = gate.REOPEN_RULES["window"]
    probe = moecl.Config(reopen="window", reopen_threshold=0.15, reopen_patience=3)
    state, fired = window.initial_state(1, probe), []
    for change in [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.2, 0.2]:
        state, reopen = window.update(state, np.array([True]), np.array([change]), 0.15, 3)
        fired.append(bool(reopen[0]))
    assert fired.index(True) == 7  # the mean of 0.1, 0.2, 0.2 first exceeds 0.15 in the 8th round
    assert config.reopen == "never" and config.drift_round is None


def test_deep_gate_feature_and_constants():
    deep = pytest.importorskip("moecl.deep")
    images = np.random.default_rng(0).random((5, 1, 4, 4)).astype(np.float32)
    centre = np.full(16, 0.5)
    assert np.allclose(deep.gate_feature(images, centre, None), images.reshape(5, -1).mean(axis=0) - 0.5)
    deep_config = deep.DeepConfig()
    assert (deep_config.eta, deep_config.alpha, deep_config.lambda_, deep_config.Gamma) == (0.3, 0.3, 0.005, 0.05)
