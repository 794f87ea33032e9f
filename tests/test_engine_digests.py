"""Bit-identity of the engine: fixed-seed runs against stored SHA-256 digests of every record.

The digests in ``engine_digests.json`` were taken from the engine before its loop was split
into one function per step of Algorithm 1; any change to the engine's arithmetic (the order
of a sum, a fused operation, a dtype) changes some digest. A configuration of every strategy
is covered: default, no termination, entropy bonus, least-change router, gradient update,
both sharing rules, drift with each re-opening rule, anisotropy, no locality loss, one
expert, isotropic features, clusters, a given pool and a `simulate_many` batch.

Floating-point results may differ by rounding with another numpy or BLAS, or another CPU
(OpenBLAS picks kernels per CPU). The digests record the environment they were taken in;
elsewhere the test is skipped rather than failed. To take new digests in a new environment,
check out an engine commit whose results are trusted and run
``python tests/test_engine_digests.py --write`` (never to paper over a change of the engine).
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

import moecl

DIGESTS = Path(__file__).with_name("engine_digests.json")
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


def digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def run_case(name: str) -> list:
    case = CASES[name]
    if isinstance(case, list):
        return moecl.simulate_many(case, replicates=REPLICATES, seed=SEED)
    pool = None
    if name == "given-pool":
        pool = tuple(np.random.default_rng(9).standard_normal((2, case.N, case.d)))
    return [moecl.simulate(case, replicates=REPLICATES, seed=SEED, pool=pool)]


def case_digests(name: str) -> list[dict]:
    return [{record: digest(getattr(result, record)) for record in RECORDS} for result in run_case(name)]


def environment() -> dict:
    return {"numpy": np.__version__, "machine": platform.machine(), "python": platform.python_version_tuple()[0]}


def _stored() -> dict:
    return json.loads(DIGESTS.read_text())


@pytest.mark.parametrize("name", CASES)
def test_engine_records_match_stored_digests(name):
    stored = _stored()
    here = environment()
    if stored["environment"] != here:
        pytest.skip(f"digests taken with {stored['environment']}, this is {here}")
    got = case_digests(name)
    expected = stored["cases"][name]
    assert len(got) == len(expected)
    for position, (mine, theirs) in enumerate(zip(got, expected)):
        changed = [record for record in RECORDS if mine[record] != theirs.get(record)]
        assert not changed, f"{name}[{position}]: records changed bit for bit: {changed}"


def test_digest_cases_cover_every_strategy():
    """Every registered value of every strategy field appears in some case."""
    from moecl import config as config_module, experts, gate

    configs = [c for case in CASES.values() for c in (case if isinstance(case, list) else [case])]
    strategies = {
        "termination": gate.TERMINATION_RULES, "reopen": gate.REOPEN_RULES, "balance_loss": gate.BALANCE_LOSSES,
        "locality_loss": gate.LOCALITY_LOSSES, "router": gate.ROUTERS, "expert_update": experts.EXPERT_UPDATES,
        "sharing": config_module.SHARING_RULES, "error_metric": config_module.ERROR_METRICS,
        "features": config_module.FEATURE_MODELS,
    }
    for field, allowed in strategies.items():
        used = {getattr(config, field) for config in configs}
        assert set(allowed) <= used, f"{field}: no digest case for {sorted(set(allowed) - used)}"
    assert set(_stored()["cases"]) == set(CASES)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_engine_digests.py --write   (see the module docstring first)")
    payload = {"environment": environment(), "seed": SEED, "replicates": REPLICATES,
               "cases": {name: case_digests(name) for name in CASES}}
    DIGESTS.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS} ({len(CASES)} cases)")
