"""The engine's numbers against a stored fixed-seed reference, portable across x86-64 CPUs.

Every record of every case of ``engine_cases.py`` (one case per strategy) is compared with
``engine_reference.npz``: integer records (tasks, routing, closest truths, the termination
round, the gate's training flags) exactly, floating-point records within a tolerance that
float64 rounding cannot reach, relative to the record's largest magnitude in the case.

Why these tolerances. numpy and OpenBLAS pick other kernels on other processors (an AMD EPYC
and an Intel Xeon with AVX-512 disagree in the last bits of a sum), and the engine carries
such differences through its rounds; the gate's parameters amplify them most. Measured by
multiplying every real setting (`SCALES`: the pool's scale, the gate's and experts'
constants, the signals' scales) by 1 + eps, the largest relative deviation over all cases:

=====================  =================  ==================  ===========
record                 eps = 1e-15        eps = 1e-12         tolerance
=====================  =================  ==================  ===========
gate_values            1.5e-8             1.3e-5              1e-6
final_theta            1.7e-8             1.4e-5              1e-6
every other float      9.6e-15            2.1e-12             1e-9
=====================  =================  ==================  ===========

eps = 1e-15 is about five units in the last place, applied to every setting at once, where
two kernels differ by one or two units per operation: the tolerances are 60 and 10^5 times
the deviation it causes. No integer record changed at eps = 1e-12, so routing, termination
and the closest truths are kept away from ties in every case. The tests below recheck this
in this process, on any CPU: a perturbation of 1e-14 (50 units) stays inside the tolerance
with every integer record unchanged, and a real change (every expert update off by one
part in a million) is caught in every case.

The reference was taken once (``python tests/test_engine_reference.py --write``) from an
engine whose results are trusted; rewrite it only for a deliberate change of the engine's
arithmetic, never to paper over one. For a refactor that must keep the numbers bit for bit,
compare digests on one machine with ``scripts/engine_digests.py``.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from engine_cases import CASES, RECORDS, SEED, run_case  # noqa: E402

REFERENCE = Path(__file__).with_name("engine_reference.npz")

#: Relative tolerance per floating-point record (see the module docstring); others: DEFAULT_TOLERANCE.
TOLERANCE = {"gate_values": 1e-6, "final_theta": 1e-6}
DEFAULT_TOLERANCE = 1e-9
#: The real-valued settings a perturbation multiplies by 1 + eps (the pool's scale, the gate's and
#: the experts' constants, the signals' scales); T1 is kept, so no count moves with them.
SCALES = ("sigma0", "eta", "alpha", "lambda_", "Gamma", "beta", "sigma_t", "v_norm", "cluster_spread")


def perturbed(eps: float):
    """A ``change`` for `run_case`: every setting of `SCALES` times 1 + eps, T1 as it was."""
    return lambda config: config.replace(T1=config.T1, **{name: getattr(config, name) * (1 + eps) for name in SCALES})


def key(name: str, position: int, record: str) -> str:
    return f"{name}[{position}]/{record}"


def differences(name: str, results: list, reference) -> list[str]:
    """The records of ``results`` (case ``name``) that differ from ``reference`` beyond tolerance,
    each as 'record: how'."""
    found = []
    for position, result in enumerate(results):
        for record in RECORDS:
            got, expected = np.asarray(getattr(result, record)), reference[key(name, position, record)]
            if got.shape != expected.shape or got.dtype != expected.dtype:
                found.append(f"{record}: {got.dtype}{got.shape} against {expected.dtype}{expected.shape}")
            elif expected.dtype.kind in "biu":
                if not np.array_equal(got, expected):
                    found.append(f"{record}: {int(np.sum(got != expected))} entries differ")
            else:
                same_nan = np.array_equal(np.isnan(got), np.isnan(expected))
                finite = ~np.isnan(expected)
                scale = float(np.max(np.abs(expected[finite]), initial=0.0)) or 1.0
                deviation = float(np.max(np.abs(got[finite] - expected[finite]), initial=0.0)) / scale
                if not same_nan or deviation > TOLERANCE.get(record, DEFAULT_TOLERANCE):
                    found.append(f"{record}: relative deviation {deviation:.2e}" + ("" if same_nan else ", NaNs moved"))
    return found


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as stored:
        return dict(stored)


@pytest.mark.parametrize("name", CASES)
def test_engine_records_match_the_reference(name, reference):
    changed = differences(name, run_case(name), reference)
    assert not changed, f"{name}: {changed}"


@pytest.mark.parametrize("name", CASES)
def test_rounding_sized_changes_stay_inside_the_tolerance(name, reference):
    # a stand-in for another CPU's rounding: if this fails, the tolerance no longer covers it
    changed = differences(name, run_case(name, perturbed(1e-14)), reference)
    assert not changed, f"{name}: a perturbation of 1e-14 moved {changed}"


@pytest.mark.parametrize("name", CASES)
def test_a_real_change_is_caught(name, reference, monkeypatch):
    # every expert update off by one part in a million: a change of the engine, not of rounding
    from moecl import experts

    for update in (experts.ExactUpdate, experts.GradientUpdate):
        exact = update.change
        monkeypatch.setattr(update, "change", lambda self, *args, _exact=exact: _exact(self, *args) * (1 + 1e-6))
    changed = differences(name, run_case(name), reference)
    assert changed, f"{name}: a change of 1e-6 in every expert update went unnoticed"


def test_a_changed_routing_decision_is_caught(reference):
    (result,) = run_case("default")
    result.experts[1, 40] = (result.experts[1, 40] + 1) % result.config.M
    assert differences("default", [result], reference) == ["experts: 1 entries differ"]


def test_cases_cover_every_strategy():
    """Every registered value of every strategy field appears in some case; the reference holds every case."""
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
        assert set(allowed) <= used, f"{field}: no case for {sorted(set(allowed) - used)}"
    with np.load(REFERENCE) as stored:
        assert {name.split("[")[0] for name in stored.files if name != "about"} == set(CASES)


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "")


def write_reference() -> None:
    arrays = {}
    for name in CASES:
        for position, result in enumerate(run_case(name)):
            for record in RECORDS:
                arrays[key(name, position, record)] = np.asarray(getattr(result, record))
    about = {"seed": SEED, "numpy": np.__version__, "machine": platform.machine(), "cpu": _cpu_model(),
             "python": platform.python_version()}
    np.savez_compressed(REFERENCE, about=np.array(json.dumps(about)), **arrays)
    print(f"wrote {REFERENCE} ({len(CASES)} cases, {len(arrays)} records)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_engine_reference.py --write   (read the module docstring first)")
    write_reference()
