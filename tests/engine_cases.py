"""The fixed-seed engine runs that pin the engine's numbers: one case per strategy.

A configuration of every strategy is covered: default, no termination, entropy bonus,
least-change router, gradient update, both sharing rules, drift with each re-opening rule,
anisotropy, no locality loss, one expert, isotropic features, clusters, a given pool and a
`simulate_many` batch. Two tools read these cases:

* ``tests/test_engine_reference.py`` (CI, any x86-64 CPU): the records against a stored
  reference within a tolerance that float64 rounding cannot reach, integer records exactly;
* ``scripts/engine_digests.py`` (a refactoring tool, one machine): SHA-256 digests of every
  record before and after a change, compared bit for bit on the machine that took them.
"""

from __future__ import annotations

import numpy as np
import moecl

SEED = 20261201
REPLICATES = [0, 2, 5]

_drift = dict(M=8, T=160, sigma0=0.3, drift_round=70, drift_count=2)

#: name -> Config (simulated alone) or list of Configs (one `simulate_many` call).
CASES = {
    "default": moecl.Config(T=130),
    "M8-gap": moecl.Config(M=8, T=150, sigma0=0.3),
    "termination-none": moecl.Config(M=8, T=150, sigma0=0.3, termination="none"),
    "entropy": moecl.Config(M=6, T=120, sigma0=0.3, balance_loss="entropy"),
    "least-change": moecl.Config(M=6, T=100, sigma0=0.3, router="least_change"),
    "gradient-3": moecl.Config(M=4, T=100, sigma0=0.3, expert_update="gradient", gradient_steps=3),
    "sharing-update": moecl.Config(M=8, T=150, sigma0=0.3, sharing="update"),
    "sharing-average": moecl.Config(M=8, T=150, sigma0=0.3, sharing="average"),
    "sharing-update-gradient": moecl.Config(M=8, T=150, sigma0=0.3, sharing="update", expert_update="gradient", gradient_steps=2),
    "drift": moecl.Config(**_drift),
    "drift-reopen-locality": moecl.Config(**_drift, reopen="locality", reopen_threshold=0.2, reopen_patience=3),
    "drift-reopen-window": moecl.Config(**_drift, reopen="window", reopen_threshold=0.3, reopen_patience=6),
    "drift-reopen-at-drift": moecl.Config(**_drift, reopen="at-drift"),
    "anisotropy-sigma": moecl.Config(M=4, T=100, sigma0=0.3, anisotropy=10.0, error_metric="sigma"),
    "anisotropy-euclidean": moecl.Config(M=4, T=100, sigma0=0.3, anisotropy=5.0),
    "locality-none": moecl.Config(M=8, T=150, sigma0=0.3, locality_loss="none"),
    "locality-none-alpha0": moecl.Config(M=8, T=120, sigma0=0.3, locality_loss="none", alpha=0.0),
    "single-expert": moecl.Config(M=1, T=100),
    "isotropic": moecl.Config(M=3, T=90, features="isotropic", d=10, s=3),
    "clusters": moecl.Config(N=6, M=3, K=3, T=90, sigma0=0.5),
    "given-pool": moecl.Config(N=3, M=3, T=60, d=8, s=3),
    "many": [
        moecl.Config(M=4, T=100, sigma0=0.1, sigma_t=0.1),
        moecl.Config(M=4, T=100, sigma0=0.5, sigma_t=3.0),
        moecl.Config(M=4, T=100, sigma0=0.2, sigma_t=0.3, T1=5, lambda_=0.02, eta=0.3, alpha=0.2, Gamma=0.05),
    ],
    "many-reopen": [
        moecl.Config(**_drift, reopen="locality", reopen_threshold=0.2, reopen_patience=3),
        moecl.Config(**{**_drift, "sigma0": 0.5}, reopen="locality", reopen_threshold=0.2, reopen_patience=3, T1=9),
    ],
}

RECORDS = (
    "tasks", "experts", "forgetting", "generalization", "gate_values", "change_norm", "closest_truth",
    "termination_round", "drift_generalization", "gate_trained", "final_experts", "final_theta",
)


def run_case(name: str, change=None) -> list:
    """The `moecl.SimulationResult` of each configuration of case ``name``; ``change(config)``,
    if given, replaces each configuration first (the tests' perturbations)."""
    case = CASES[name]
    if change is not None:
        case = [change(c) for c in case] if isinstance(case, list) else change(case)
    if isinstance(case, list):
        return moecl.simulate_many(case, replicates=REPLICATES, seed=SEED)
    pool = None
    if name == "given-pool":
        pool = tuple(np.random.default_rng(9).standard_normal((2, case.N, case.d)))
    return [moecl.simulate(case, replicates=REPLICATES, seed=SEED, pool=pool)]


