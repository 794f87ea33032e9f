"""The locality-loss switch of `moecl.Config` and the helpers of `moecl.ablation` (book/ablation.md)."""

import numpy as np
import pytest

import moecl
from moecl import ablation, gate
from moecl.reference import simulate_one
from same_records import assert_same_records

FIELDS = ["tasks", "experts", "forgetting", "generalization", "gate_values", "change_norm", "closest_truth"]


def test_locality_loss_is_a_registered_strategy():
    assert moecl.Config().locality_loss == "change"
    assert set(gate.LOCALITY_LOSSES) == {"change", "none"}
    with pytest.raises(ValueError, match="locality_loss='nope'"):
        moecl.Config(locality_loss="nope")


def test_locality_coefficients():
    """'change' is Eq. (6)'s gradient; 'none' is zero. The selected expert's coefficient is
    never negative: the locality term can only lower the chosen expert's score."""
    rng = np.random.default_rng(0)
    pi = gate.softmax(rng.normal(size=(50, 6)))
    chosen, change = rng.integers(6, size=50), rng.uniform(0, 2, size=50)
    np.testing.assert_array_equal(gate.LOCALITY_LOSSES["change"](pi, chosen, change), gate.locality_grad(pi, chosen, change))
    assert not gate.LOCALITY_LOSSES["none"](pi, chosen, change).any()
    selected = np.take_along_axis(gate.locality_grad(pi, chosen, change), chosen[:, None], axis=1)
    assert np.all(selected >= 0)


@pytest.mark.parametrize("changes", [{"locality_loss": "none"}, {"locality_loss": "none", "alpha": 0.0}, {"alpha": 0.0}])
def test_ablations_equal_oracle(changes):
    config = moecl.Config(M=6, T=120, sigma0=0.3, **changes)
    result = moecl.simulate(config, replicates=[2], seed=5)
    oracle = simulate_one(config, seed=5, replicate=2)
    assert_same_records(result, oracle, FIELDS, row=0, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(result.final_theta[0], oracle["final_theta"], atol=1e-9)
    assert result.termination_round[0] == oracle["termination_round"]


def test_without_either_loss_the_gate_never_moves():
    """Neither term: Theta stays 0, so termination changes nothing (routing by the noise alone)."""
    config = moecl.Config(M=4, T=80, **ablation.GATE_LOSSES["neither"])
    gap = moecl.simulate(config, replicates=3, seed=2)
    free = moecl.simulate(config.replace(termination="none"), replicates=3, seed=2)
    assert not gap.final_theta.any() and not free.final_theta.any()
    assert np.all(gap.termination_round == config.T1 + 1)
    np.testing.assert_array_equal(gap.experts, free.experts)
    np.testing.assert_array_equal(gap.generalization, free.generalization)


def test_measures_and_pooling():
    config = moecl.Config(M=4, T=60)
    result = moecl.simulate(config, replicates=3, seed=1)
    values = ablation.measures(result, window=20)
    assert set(values) == set(ablation.MEASURES)
    assert all(v.shape == (3,) for v in values.values())
    np.testing.assert_array_equal(values["forgetting"], result.forgetting[:, -1])
    f = result.load()[:, -1]
    np.testing.assert_allclose(values["load cv"], f.std(-1) / f.mean(-1))
    assert np.all(values["excess purity"] <= 1)
    pooled = ablation.pooled_measures(config, seeds=[1, 4], replicates=3, window=20)
    assert pooled["forgetting"].shape == (2,)
    assert pooled["forgetting"][0] == pytest.approx(values["forgetting"].mean())


def test_gate_forces_match_the_gate_step():
    """The recovered coefficients are `moecl.gate`'s on the recorded round; no locality term
    when it is switched off, no step at all once the gate has stopped."""
    config = moecl.Config(M=4, T=60, sigma0=0.3, termination="none")
    result = moecl.simulate(config, replicates=2, seed=3)
    local, balance = ablation.gate_forces(result)
    assert local.shape == balance.shape == (2, 60)
    k, t = 1, 30
    pi = gate.softmax(result.gate_values[k, t - 1])
    f = result.load()[k, t - 1]
    expected_loc = gate.locality_grad(pi, result.experts[k, t - 1], result.change_norm[k, t - 1])
    expected_aux = gate.load_balance_grad(pi, f, config.alpha, t)
    assert local[k, t - 1] == pytest.approx(np.linalg.norm(expected_loc))
    assert balance[k, t - 1] == pytest.approx(np.linalg.norm(expected_aux))
    no_loc = moecl.simulate(config.replace(locality_loss="none"), replicates=2, seed=3)
    assert not ablation.gate_forces(no_loc)[0].any()
    frozen = moecl.simulate(config.replace(termination="gap", T=120), replicates=2, seed=3)
    stop = frozen.termination_round[0]
    assert stop > 0 and not ablation.gate_forces(frozen)[1][0, stop - 1:].any()


def test_single_expert_ignores_the_scales_of_the_features():
    """Scaling the columns of X_t keeps their span, so one expert's updates (Eq. (5)) and its
    errors are the same with a blind gate's features (book/synthetic.md, the blind gate)."""
    inside = moecl.simulate(moecl.Config(M=1, T=60), replicates=3, seed=4)
    blind = moecl.simulate(moecl.Config(M=1, T=60, v_norm=1.0, sigma_t=1.0), replicates=3, seed=4)
    np.testing.assert_allclose(blind.generalization, inside.generalization, rtol=1e-9)
    np.testing.assert_allclose(blind.forgetting, inside.forgetting, rtol=1e-9)
