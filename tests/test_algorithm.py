"""Algorithm 1 (`moecl.simulate`): equal to the plain oracle, deterministic, batch-invariant."""

import numpy as np
import pytest

import moecl
from moecl.reference import simulate_one
from same_records import RECORD_NAMES, assert_same_records

ORACLE_CONFIGS = {
    "single-expert": moecl.Config(M=1, T=80),
    "M8-gap": moecl.Config(M=8, T=150, sigma0=0.3),  # T1 = 15: terminates within the run
    "M8-none": moecl.Config(M=8, T=150, sigma0=0.3, termination="none"),
    "isotropic": moecl.Config(M=3, T=70, features="isotropic", d=10, s=3),
    "clusters-M<N": moecl.Config(N=6, M=3, K=3, T=90, sigma0=0.5),
}
#: Agreement with the oracle: the two sum the gate gradients in different orders.
ORACLE_TOLERANCE = dict(rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ORACLE_CONFIGS)
def test_engine_equals_oracle(name):
    """The batched engine and the loop from the definitions agree on every record.

    Up to rounding: the two sum the gate gradients in different orders, and over
    150 rounds that leaves differences of order 1e-11 in the gate values.
    """
    config = ORACLE_CONFIGS[name]
    result = moecl.simulate(config, replicates=[0, 3], seed=11)
    for k, replicate in enumerate([0, 3]):
        oracle = simulate_one(config, seed=11, replicate=replicate)
        assert_same_records(result, oracle, RECORD_NAMES, row=k, label=name, **ORACLE_TOLERANCE)


def test_oracle_configs_exercise_termination():
    """The gap configuration does terminate in the oracle comparison (else that test proves less)."""
    result = moecl.simulate(ORACLE_CONFIGS["M8-gap"], replicates=[0, 3], seed=11)
    assert np.all(result.termination_round > ORACLE_CONFIGS["M8-gap"].T1)
    assert np.all(moecl.simulate(ORACLE_CONFIGS["M8-none"], replicates=2, seed=11).termination_round == -1)


def test_shapes_and_first_round():
    config = moecl.Config(M=4, T=40)
    result = moecl.simulate(config, replicates=3, seed=0)
    R, T, M = 3, 40, 4
    assert result.forgetting.shape == result.generalization.shape == (R, T)
    assert result.gate_values.shape == result.closest_truth.shape == (R, T, M)
    assert result.final_experts.shape == result.final_theta.shape == (R, M, config.d)
    assert np.all(np.isnan(result.forgetting[:, 0])) and np.all(np.isfinite(result.forgetting[:, 1:]))
    # Round 1: every expert and the gate start at 0, so all gate values are 0 and the
    # task is fitted exactly on its span: G_1 = ||w_{n_1}||^2 - ||P w_{n_1}||^2 >= 0.
    assert np.all(result.gate_values[:, 0] == 0)
    W = result.pool.W
    assert np.all(result.generalization[:, 0] <= np.sum(W[result.tasks[:, 0]] ** 2, axis=1) + 1e-12)
    np.testing.assert_array_equal(result.rounds, np.arange(1, T + 1))


def test_determinism_and_batch_invariance():
    config = moecl.Config(M=5, T=70, sigma0=0.3)
    batch = moecl.simulate(config, replicates=6, seed=4)
    again = moecl.simulate(config, replicates=6, seed=4)
    assert_same_records(batch, again)
    for k in (0, 4):
        alone = moecl.simulate(config, replicates=[k], seed=4)
        picked = batch.replicate(k)
        assert_same_records(alone, picked)
        np.testing.assert_array_equal(picked.replicates, [k])
    other = moecl.simulate(config, replicates=6, seed=5)
    assert not np.array_equal(other.tasks, batch.tasks)
    assert not np.array_equal(batch.tasks[0], batch.tasks[1])


def test_given_pool_is_used():
    config = moecl.Config(N=3, M=3, T=40, d=8, s=3)
    rng = np.random.default_rng(9)
    W, V = rng.standard_normal((2, 3, 8))
    result = moecl.simulate(config, replicates=2, seed=0, pool=(W, V))
    np.testing.assert_array_equal(result.pool.W, W)
    drawn = moecl.simulate(config, replicates=2, seed=0)
    assert not np.allclose(drawn.generalization, result.generalization)


def test_load_bookkeeping():
    config = moecl.Config(M=4, T=60)
    result = moecl.simulate(config, replicates=3, seed=2)
    load = result.load()
    assert load.shape == (3, 60, 4)
    np.testing.assert_allclose(load.sum(axis=-1), 1.0)
    for r in range(3):
        counts = np.bincount(result.experts[r], minlength=4)
        np.testing.assert_allclose(load[r, -1], counts / 60)
        np.testing.assert_allclose(load[r, 9], np.bincount(result.experts[r, :10], minlength=4) / 10)


def test_single_expert_routes_everything_to_expert_zero():
    result = moecl.simulate(moecl.Config(M=1, T=50), replicates=2, seed=1)
    assert np.all(result.experts == 0)
    assert np.all(result.gate_values == 0)  # one expert: Eq. (3) gives pi = 1, zero gradient


def test_termination_freezes_the_gate():
    """After the termination round T2 the gate no longer moves; without termination it does.

    Rounds are drawn in chunks of `moecl.tasks.CHUNK`, so a run of T = c * CHUNK rounds
    sees exactly the first rounds of a longer run: its final Theta is Theta after round T.
    """
    chunk = moecl.tasks.CHUNK
    config = moecl.Config(M=8, sigma0=0.3, T=20 * chunk)
    long = moecl.simulate(config, replicates=4, seed=3)
    T2 = long.termination_round
    assert np.all(T2 > config.T1), T2
    short_T = int(np.ceil(T2.max() / chunk)) * chunk
    assert short_T < config.T, "choose a longer run: the gate terminates too late for this test"
    short = moecl.simulate(config.replace(T=short_T), replicates=4, seed=3)
    np.testing.assert_array_equal(short.final_theta, long.final_theta)
    np.testing.assert_array_equal(short.termination_round, T2)

    free = config.replace(termination="none")
    free_long = moecl.simulate(free, replicates=4, seed=3)
    free_short = moecl.simulate(free.replace(T=short_T), replicates=4, seed=3)
    assert np.all(free_long.termination_round == -1)
    moved = np.linalg.norm(free_long.final_theta - free_short.final_theta, axis=(1, 2))
    assert np.all(moved > 0), moved


def test_gate_trains_before_termination():
    """Before T2 the gate moves away from 0, so gate values differ between experts."""
    result = moecl.simulate(moecl.Config(M=4, T=100, sigma0=0.3), replicates=2, seed=0)
    assert np.all(np.ptp(result.gate_values[:, 50], axis=-1) > 0)
    assert np.all(np.linalg.norm(result.final_theta, axis=(1, 2)) > 0)


def test_progress_bar(capsys):
    moecl.simulate(moecl.Config(M=2, T=40), replicates=2, seed=0, progress=True)
    assert "rounds" in capsys.readouterr().err


STRATEGY_CONFIGS = {
    "entropy": moecl.Config(M=6, T=120, sigma0=0.3, balance_loss="entropy"),
    "least-change": moecl.Config(M=6, T=80, router="least_change"),
    "gradient-3": moecl.Config(M=4, T=80, sigma0=0.3, expert_update="gradient", gradient_steps=3),
    # sharing, drift, anisotropy (M8 with sigma0 = 0.3 terminates by round ~40 of 150)
    "sharing-update": moecl.Config(M=8, T=150, sigma0=0.3, sharing="update"),
    "sharing-average": moecl.Config(M=8, T=150, sigma0=0.3, sharing="average"),
    "drift-reopen": moecl.Config(
        M=8, T=160, sigma0=0.3, drift_round=70, drift_count=2, reopen="locality", reopen_threshold=0.2, reopen_patience=3
    ),
    "drift-window": moecl.Config(
        M=8, T=220, sigma0=0.3, drift_round=100, drift_count=2, reopen="window", reopen_threshold=0.4, reopen_patience=10
    ),
    "anisotropic-sigma": moecl.Config(M=4, T=80, sigma0=0.3, anisotropy=10.0, error_metric="sigma"),
}


@pytest.mark.parametrize("name", STRATEGY_CONFIGS)
def test_strategies_equal_oracle(name):
    """The strategies beyond the paper (book/strategies.md, sharing.md, drift.md, similarity.md)
    agree with the plain loop too."""
    config = STRATEGY_CONFIGS[name]
    result = moecl.simulate(config, replicates=[1], seed=7)
    oracle = simulate_one(config, seed=7, replicate=1)
    assert_same_records(result, oracle, RECORD_NAMES, row=0, label=name, **ORACLE_TOLERANCE)


def test_gradient_update_tends_to_the_exact_update():
    """k gradient steps -> Eq. (5) as k grows (one expert, so routing cannot differ;
    isotropic features keep X^T X well conditioned, so 300 steps reach rounding level)."""
    base = moecl.Config(M=1, T=40, features="isotropic")
    exact = moecl.simulate(base, replicates=2, seed=1)
    errors = []
    for steps in (1, 10, 300):
        run = moecl.simulate(base.replace(expert_update="gradient", gradient_steps=steps), replicates=2, seed=1)
        errors.append(np.max(np.abs(run.final_experts - exact.final_experts)))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-9, errors


def test_least_change_router_ignores_the_gate():
    result = moecl.simulate(moecl.Config(M=4, T=60, router="least_change"), replicates=2, seed=0)
    assert np.all(result.final_theta != 0)  # the gate still trains on its losses...
    assert np.all(result.experts[:, 0] == 0)  # ...but routing follows the change norms: all tie at 0


def test_new_strategies_at_their_neutral_values_change_nothing():
    """anisotropy 1 with Sigma-weighted errors is the Euclidean run; sharing without
    termination never shares (the gate never freezes); re-opening a gate that never
    terminates does nothing."""
    base = moecl.Config(M=6, T=120, sigma0=0.3, termination="none")
    reference = moecl.simulate(base, replicates=2, seed=3)
    for changes in ({"error_metric": "sigma"}, {"sharing": "update"}, {"sharing": "average"}, {"reopen": "locality"}):
        other = moecl.simulate(base.replace(**changes), replicates=2, seed=3)
        assert_same_records(other, reference, label=str(changes))


def test_drift_freezes_a_terminated_gate_and_reopening_restarts_it():
    config = moecl.Config(M=8, T=400, sigma0=0.3, drift_round=200, drift_count=2)
    frozen = moecl.simulate(config, replicates=4, seed=2)
    assert np.all((frozen.termination_round > 0) & (frozen.termination_round < 200))
    assert not frozen.gate_trained[:, 199:].any()  # the new truths meet a frozen gate
    assert set(np.unique(frozen.tasks[:, 200:])) == {2, 3, 4, 5}  # truths 0, 1 were replaced by 4, 5
    assert set(np.unique(frozen.tasks[:, :200])) == {0, 1, 2, 3}
    reopened = moecl.simulate(config.replace(reopen="locality", reopen_threshold=0.3), replicates=4, seed=2)
    np.testing.assert_array_equal(reopened.tasks, frozen.tasks)
    restarts = np.sum(np.diff(reopened.gate_trained.astype(int), axis=1) == 1, axis=1)
    assert np.all(restarts >= 1)
    assert np.all(reopened.gate_trained[:, 200:].any(axis=1))
    assert np.all(np.isnan(frozen.drift_generalization[:, :200]))
    assert np.all(np.isfinite(frozen.drift_generalization[:, 200:]))
    assert np.all(np.isnan(moecl.simulate(config.replace(drift_round=None), replicates=1, seed=2).drift_generalization))


def test_simulate_many_equals_separate_runs():
    """Configurations batched together (the regime grid of book/regimes.md) give exactly the numbers
    of separate runs, including the pools drawn with their own sigma0."""
    base = moecl.Config(M=4, T=90)
    configs = [base.replace(sigma_t=0.1, sigma0=0.1), base.replace(sigma_t=3.0, sigma0=0.5),
               base.replace(sigma_t=0.3, sigma0=0.2, T1=5, lambda_=0.02)]
    together = moecl.simulate_many(configs, replicates=[0, 2], seed=4)
    for config, result in zip(configs, together):
        alone = moecl.simulate(config, replicates=[0, 2], seed=4)
        assert result.config == config
        np.testing.assert_array_equal(result.pool.W, alone.pool.W)
        assert_same_records(result, alone)
    assert not np.array_equal(together[0].generalization, together[1].generalization)


@pytest.mark.parametrize(
    "configs, words",
    [
        ([], ["configs is empty"]),
        ([moecl.Config(), "M=8"], ["configs[1]", "str"]),
        ([moecl.Config(M=4), moecl.Config(M=8)], ["configs[1].M=8", "configs[0].M=4"]),
        ([moecl.Config(), moecl.Config(termination="none")], ["configs[1].termination='none'"]),
    ],
)
def test_simulate_many_rejects_mixed_structures(configs, words):
    with pytest.raises(ValueError) as error:
        moecl.simulate_many(configs, replicates=2)
    for word in words:
        assert word in str(error.value)


def test_records_are_declared_once():
    """`RECORDS` gives every record's shape and dtype, the result's fields and the memory per round."""
    import dataclasses

    from moecl.algorithm import RECORDS, record_bytes_per_round

    config = moecl.Config(M=3, T=20, drift_round=10)
    result = moecl.simulate(config, replicates=2, seed=0)
    for record in RECORDS:
        array = getattr(result, record.name)
        assert array.shape == (2, *record.shape(config)) and array.dtype == record.dtype, record.name
    names = [f.name for f in dataclasses.fields(moecl.SimulationResult)]
    assert names == ["config", "seed", "replicates", "pool", *RECORD_NAMES, "wall_time"]
    per_round = sum(getattr(result, record.name).nbytes for record in RECORDS if record.per_round) / (2 * config.T)
    assert record_bytes_per_round(config) == per_round == 10 * config.M + 49


def test_strategies_are_registries():
    """Every strategy field of `Config` names an entry of a registry the engine looks up."""
    from moecl import experts, gate

    for field, registry in [("router", gate.ROUTERS), ("expert_update", experts.EXPERT_UPDATES),
                            ("termination", gate.TERMINATION_RULES), ("reopen", gate.REOPEN_RULES)]:
        for name, strategy in registry.items():
            assert strategy.name == name
            assert getattr(moecl.Config(**{field: name}), field) == name
        with pytest.raises(ValueError, match=field):
            moecl.Config(**{field: "no-such-rule"})
