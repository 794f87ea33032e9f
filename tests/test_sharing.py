"""Sharing within an expert set (book chapter: sharing): the phase-model recursion and its closed form.

With ``sharing="update"`` the experts of the selected expert's set all learn a phase-2
task with the same projector P_t (`moecl.theory.phase_model`, module docstring). Checked here:
the recursion against the phase model's Monte Carlo (|z| < 4 standard errors of the
replicate mean, ``moecl.theory.Z_MAX``), the sympy derivation against the compact
closed form and against the recursion, the limits (sets of one expert: nothing
changes; sharing off: the old numbers bit for bit), and bad inputs.

Run with ``pytest -s`` to see the z-scores.
"""

import numpy as np
import pytest
import sympy as sp

from moecl import theory
from moecl.theory.phase_model import (
    PHASE_SHARING_RULES,
    default_routing,
    expectations_over_routings,
    expert_sets,
    phase_model_expectations,
    simulate_phase_model,
    update_law,
)
from moecl.theory import SYMBOLS as sym
from same_records import assert_same_records

RTOL = 1e-10


def _pool(seed, N, d=10, K=None):
    rng = np.random.default_rng(seed)
    if K is None:
        return rng.standard_normal((N, d))
    centres = rng.standard_normal((K, d))
    return centres[np.arange(N) % K] + 0.3 * rng.standard_normal((N, d))


def _close(a, b, rtol=RTOL):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    ok = ~np.isnan(a)
    np.testing.assert_allclose(a[ok], b[ok], rtol=rtol, atol=0)


# --------------------------------------------------------------------------- sets and the update law


def test_expert_sets():
    np.testing.assert_array_equal(expert_sets(default_routing(4, 8)), [0, 1, 2, 3, 0, 1, 2, 3])
    np.testing.assert_array_equal(expert_sets(default_routing(4, 6)), [0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(expert_sets(default_routing(4, 2)), [0, 1])  # M < N: one expert a set
    np.testing.assert_array_equal(expert_sets(default_routing(4, 4, K=2)), [0, 1, 0, 1])
    # a truth served by experts 0 and 1 and another by 1 and 2 links all three; expert 3 serves none
    Q2 = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    np.testing.assert_array_equal(expert_sets(Q2), [0, 0, 0, 1])


def test_update_law():
    """p = S q: every expert of a balanced set is updated with probability |g| / N, towards its own truths."""
    N, M = 4, 8
    Q2 = default_routing(N, M)
    q = Q2.T / N
    p = update_law(q, Q2)
    np.testing.assert_allclose(p.sum(axis=1), np.full(M, 1 / N), rtol=1e-15)
    np.testing.assert_allclose(q.sum(axis=1), np.full(M, 1 / M), rtol=1e-15)
    assert np.all((p > 0) == (q > 0))  # still only towards the truths the expert serves
    Q2 = default_routing(N, 3)  # M < N: sets of one expert, p = q
    np.testing.assert_array_equal(update_law(Q2.T / N, Q2), Q2.T / N)


# --------------------------------------------------------------------------- limits


@pytest.mark.parametrize("N, M, K, T1", [(4, 8, None, 10), (6, 3, None, 5), (4, 2, None, 0), (6, 3, 3, 7)])
def test_sharing_off_is_unchanged(N, M, K, T1):
    """sharing="none" gives the old numbers bit for bit (default argument, both entry points, closed forms)."""
    W = _pool(1, N, K=K)
    Q2 = default_routing(N, M, K)
    old = phase_model_expectations(W, 0.6, M, 40, T1, Q2)
    off = phase_model_expectations(W, 0.6, M, 40, T1, Q2, sharing="none")
    stacked = expectations_over_routings(W, 0.6, M, 40, T1, Q2[None], sharing="none")
    assert_same_records(off, old)
    assert_same_records(stacked, old)
    for name in old:
        _close(old[name], theory.curves(W, 0.6, M, 40, T1, K=K)[name])
    runs = simulate_phase_model(W, 10, 3, M, 25, T1, Q2, replicates=20, seed=4)
    again = simulate_phase_model(W, 10, 3, M, 25, T1, Q2, replicates=20, seed=4, sharing="none")
    assert_same_records(again, runs)


@pytest.mark.parametrize("N, M, K", [(4, 4, None), (6, 3, None), (5, 2, None), (6, 3, 3)])
def test_sets_of_one_expert_change_nothing(N, M, K):
    """When every set is one expert (M <= N) sharing is a no-op: recursion and Monte Carlo identical."""
    W = _pool(2, N, K=K)
    Q2 = default_routing(N, M, K)
    assert len(set(expert_sets(Q2).tolist())) == M
    off = phase_model_expectations(W, 0.7, M, 30, 6, Q2)
    on = phase_model_expectations(W, 0.7, M, 30, 6, Q2, sharing="update")
    runs_off = simulate_phase_model(W, 10, 3, M, 20, 6, Q2, replicates=15, seed=5)
    runs_on = simulate_phase_model(W, 10, 3, M, 20, 6, Q2, replicates=15, seed=5, sharing="update")
    assert_same_records(on, off)
    assert_same_records(runs_on, runs_off)
    if N % M == 0:  # balanced: the closed form's phase-2 factor is rho itself
        assert theory.sharing_curves(W, 0.7, M, 30, 6, Q2)["rho_s"] == pytest.approx(1 - 0.3 / M, rel=1e-15)


def test_sharing_starts_after_exploration():
    """Nothing is shared while the gate explores: rounds t <= T1 are the same with and without sharing,
    and the Monte Carlo uses one random stream (same tasks and routing), while later rounds differ."""
    N, M, T1, T = 3, 6, 8, 20
    W = _pool(3, N)
    off = phase_model_expectations(W, 0.7, M, T, T1)
    on = phase_model_expectations(W, 0.7, M, T, T1, sharing="update")
    for name in off:
        np.testing.assert_array_equal(on[name][:T1], off[name][:T1])
        assert np.all(on[name][T1:] != off[name][T1:])
    runs_off = simulate_phase_model(W, 10, 3, M, T, T1, replicates=10, seed=6)
    runs_on = simulate_phase_model(W, 10, 3, M, T, T1, replicates=10, seed=6, sharing="update")
    assert_same_records(runs_on, runs_off, ["tasks", "experts"])
    np.testing.assert_array_equal(runs_on["generalization"][:, :T1], runs_off["generalization"][:, :T1])
    assert not np.array_equal(runs_on["generalization"][:, T1:], runs_off["generalization"][:, T1:])


# --------------------------------------------------------------------------- closed form


def test_sympy_derivation_equals_compact_form():
    """`derive_sharing_forms` (sympy's sums) equals the compact statement exactly, at rational points."""
    derived = theory.derive_sharing_forms()
    compact = theory.compact_sharing_forms()
    points = [
        dict(r=sp.Rational(7, 10), rho=sp.Rational(9, 10), rho_s=sp.Rational(4, 5), t=37, T1=11),
        dict(r=sp.Rational(1, 3), rho=sp.Rational(5, 6), rho_s=sp.Rational(1, 2), t=5, T1=1),
        dict(r=sp.Rational(9, 10), rho=sp.Rational(19, 20), rho_s=sp.Rational(19, 20), t=12, T1=0),
    ]
    for point in points:
        values = {getattr(sym, key): value for key, value in point.items()}
        values.update({sym.S: sp.Rational(3, 2), sym.D: sp.Rational(5, 3), sym.D_in: sp.Rational(1, 3)})
        values[sym.M] = (1 - values[sym.r]) / (1 - values[sym.rho])
        for name in derived:
            assert sp.simplify(derived[name].subs(values) - compact[name].subs(values)) == 0, (name, point)


def test_sharing_form_with_rho_s_equal_rho_is_theorems_1_and_2():
    """rho_s = rho (an expert updated as often as it is routed) gives the specialisation forms of
    `moe_expectations` exactly."""
    compact = theory.compact_sharing_forms()
    old = theory.compact_forms()["specialisation"]
    linked = {sym.M: (1 - sym.r) / (1 - sym.rho)}  # M (1 - rho) = 1 - r
    for name in compact:
        assert sp.simplify((compact[name].subs(sym.rho_s, sym.rho) - old[name]).subs(linked)) == 0


@pytest.mark.parametrize("N, M, K, T1", [(4, 8, None, 15), (3, 12, None, 10), (6, 12, 3, 12), (4, 4, 2, 9), (4, 8, None, 0)])
def test_closed_form_equals_recursion(N, M, K, T1):
    W = _pool(7, N, K=K)
    recursion = phase_model_expectations(W, 0.65, M, 90, T1, default_routing(N, M, K), sharing="update")
    closed = theory.sharing_curves(W, 0.65, M, 90, T1, K=K)
    for name in ("generalization", "forgetting"):
        _close(closed[name], recursion[name], rtol=1e-9)
    size = N // (K or N)
    assert closed["rho_s"] == pytest.approx(1 - 0.35 * size / N, rel=1e-15)


def test_sharing_expectations_symbols():
    out = theory.sharing_expectations(M=8, N=4)
    assert out["group_size"] == 1
    assert sp.simplify(out["rho_s"] - (1 - (1 - sym.r) / 4)) == 0
    assert sp.simplify(out["rho"] - (1 - (1 - sym.r) / 8)) == 0
    assert sym.D_in not in out["generalization"].free_symbols  # one truth a set: D_in = 0
    assert sym.rho_s in theory.sharing_expectations()["generalization"].free_symbols
    W = np.sqrt(2.0) * np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])  # S = 2, D = 4
    assert theory.pool_quantities(W) == pytest.approx({"S": 2.0, "D": 4.0, "D_in": 0.0}, rel=1e-12)
    value = out["generalization"].subs({sym.r: sp.Rational(7, 10), sym.t: 40, sym.T1: 10, sym.S: 2, sym.D: 4})
    expected = phase_model_expectations(W, 0.7, 8, 40, 10, sharing="update")["generalization"][-1]
    assert float(value) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- Monte Carlo


@pytest.mark.parametrize(
    "N, M, K, T, T1, R, seed",
    [(4, 8, None, 60, 12, 1500, 11), (4, 4, 2, 50, 8, 1500, 12), (3, 6, None, 40, 0, 1500, 13)],
)
def test_recursion_against_monte_carlo(N, M, K, T, T1, R, seed):
    """The phase model with sharing: Monte Carlo means within Z_MAX = 4 standard errors (of the mean
    over R replicates) of the recursion, at rounds in both phases, for both metrics."""
    d, s = 10, 3
    W = _pool(seed, N, d=d, K=K)
    Q2 = default_routing(N, M, K)
    runs = simulate_phase_model(W, d, s, M, T, T1, Q2, replicates=R, seed=seed, sharing="update")
    expected = phase_model_expectations(W, 1 - s / d, M, T, T1, Q2, sharing="update")
    rounds = sorted({2, max(T1, 2), T1 + 1, T1 + 5, T // 2, T})
    rows = theory.z_scores(runs, expected, rounds)
    print()
    print(theory.format_z_scores(rows, f"N{N} M{M} K{K}"))
    assert len(rows) == 2 * len(rounds) - (1 in rounds)  # F_1 is undefined
    assert all(abs(row["z"]) < theory.Z_MAX for row in rows)
    # the check has power: the curve without sharing is rejected late in phase 2
    isolated = phase_model_expectations(W, 1 - s / d, M, T, T1, Q2)
    far = theory.z_scores(runs, isolated, [T1 + 5, T // 2], names=("generalization",))
    assert max(abs(row["z"]) for row in far) > theory.Z_MAX


def test_monte_carlo_sets_move_together():
    """With sharing, an expert's model moves on a phase-2 round routed to a set-mate, and only then:
    G_2 (which scores task 1 on its own expert) changes exactly when task 2 went to that expert's mate."""
    N, M, T1 = 2, 4, 0
    W = _pool(9, N)
    runs_on = simulate_phase_model(W, 10, 3, M, 2, T1, replicates=30, seed=9, sharing="update")
    runs_off = simulate_phase_model(W, 10, 3, M, 2, T1, replicates=30, seed=9)
    sets = expert_sets(default_routing(N, M))
    first, second = runs_on["experts"][:, 0], runs_on["experts"][:, 1]
    mate = (sets[first] == sets[second]) & (first != second)
    assert mate.any() and (~mate).any()
    changed = runs_on["generalization"][:, 1] != runs_off["generalization"][:, 1]
    np.testing.assert_array_equal(changed, mate)


def test_pure_sets_under_impure_routing_against_monte_carlo():
    """Sets given explicitly (pure blocks) while the routing leaks 20% of the tasks uniformly: a
    misrouted task updates the whole set it was sent to. The recursion stays exact (the routing and
    the sets do not look at the models): Monte Carlo within Z_MAX = 4 standard errors of the mean."""
    N, M, T, T1, R, seed = 3, 6, 50, 6, 1500, 21
    d, s = 10, 3
    W = _pool(seed, N, d=d)
    Q2 = 0.8 * default_routing(N, M) + 0.2 / M
    sets = expert_sets(default_routing(N, M))
    assert len(set(expert_sets(Q2).tolist())) == 1  # Q2's own support links every expert
    runs = simulate_phase_model(W, d, s, M, T, T1, Q2, replicates=R, seed=seed, sharing="update", sets=sets)
    expected = phase_model_expectations(W, 1 - s / d, M, T, T1, Q2, sharing="update", sets=sets)
    rows = theory.z_scores(runs, expected, [2, T1, T1 + 1, T1 + 5, 25, T])
    print()
    print(theory.format_z_scores(rows, "pure sets"))
    assert all(abs(row["z"]) < theory.Z_MAX for row in rows)
    one_set = phase_model_expectations(W, 1 - s / d, M, T, T1, Q2, sharing="update")
    assert not np.allclose(one_set["generalization"], expected["generalization"])


def test_sets_argument():
    """sets=expert_sets(Q2) is the default; (R, M) sets average like the routings they go with."""
    N, M, T, T1 = 4, 8, 30, 5
    W = _pool(8, N)
    Q2 = default_routing(N, M)
    default = phase_model_expectations(W, 0.6, M, T, T1, Q2, sharing="update")
    given = phase_model_expectations(W, 0.6, M, T, T1, Q2, sharing="update", sets=expert_sets(Q2))
    for name in default:
        np.testing.assert_array_equal(given[name], default[name])
    rng = np.random.default_rng(0)
    Q2s = np.stack([Q2, rng.dirichlet(np.ones(M), size=N)])
    sets = np.array([expert_sets(Q2), np.arange(M) % 2])
    mean = expectations_over_routings(W, 0.6, M, T, T1, Q2s, sharing="update", sets=sets)
    each = [phase_model_expectations(W, 0.6, M, T, T1, q, sharing="update", sets=g) for q, g in zip(Q2s, sets)]
    for name in mean:
        _close(mean[name], np.mean([e[name] for e in each], axis=0))
    # without sharing the sets play no part
    off = phase_model_expectations(W, 0.6, M, T, T1, Q2, sets=np.zeros(M, dtype=int))
    np.testing.assert_array_equal(off["generalization"], phase_model_expectations(W, 0.6, M, T, T1, Q2)["generalization"])


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("sets", [np.zeros(3, dtype=int), np.zeros(6), [[0, 1, 2, 0, 1, 2]] * 2, "abc"])
def test_bad_sets_rejected(sets):
    W = _pool(0, 3)
    with pytest.raises(ValueError, match=r"sets="):
        phase_model_expectations(W, 0.5, 6, 10, 2, sharing="update", sets=sets)
    with pytest.raises(ValueError, match=r"sets="):
        simulate_phase_model(W, 10, 3, 6, 10, 2, replicates=2, sharing="update", sets=sets)


@pytest.mark.parametrize("value", ["average", "bogus", None, True, 1])
def test_bad_sharing_rejected(value):
    W = _pool(0, 3)
    with pytest.raises(ValueError, match=r"sharing="):
        phase_model_expectations(W, 0.5, 6, 10, 2, sharing=value)
    with pytest.raises(ValueError, match=r"sharing="):
        simulate_phase_model(W, 10, 3, 6, 10, 2, replicates=2, sharing=value)
    with pytest.raises(ValueError, match=r"sharing="):
        expectations_over_routings(W, 0.5, 6, 10, 2, default_routing(3, 6)[None], sharing=value)
    assert value not in PHASE_SHARING_RULES


def test_closed_form_needs_equal_groups():
    """Balanced sets of unequal sizes: the closed form refuses (the recursion still works)."""
    N, M = 3, 3
    Q2 = np.zeros((N, M))
    Q2[0, 0] = 1.0  # truth 0 alone on expert 0
    Q2[1:, 1:] = 0.5  # truths 1, 2 share experts 1, 2: load 1 per expert, balanced
    W = _pool(0, N)
    with pytest.raises(ValueError, match=r"sizes \[1, 2\]"):
        theory.sharing_curves(W, 0.5, M, 10, 2, Q2)
    with pytest.raises(ValueError, match=r"sizes \[1, 2\]"):
        theory.sharing_expectations(M, N, Q2=Q2)
    out = phase_model_expectations(W, 0.5, M, 10, 2, Q2, sharing="update")
    assert np.all(np.isfinite(out["generalization"]))
    with pytest.raises(ValueError, match="Q2 given without N"):
        theory.sharing_expectations(M, Q2=Q2)
