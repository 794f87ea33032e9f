"""Registered experiments: every one runs at a tiny scale with the documented arrays."""

import re

import numpy as np
import pytest

from moecl import experiments
from moecl.experiments import EXPERIMENTS, SCALES, run_experiment
from moecl.results import STATISTICS

R, T = 3, 20  # tiny: every experiment runs in a fraction of a second

EXPECTED_LABELS = {
    "forgetting-vs-experts": ["M1", "M2", "M4", "M8", "M16", "M8-noterm"],
    "termination": ["M8", "M8-noterm"],
    "specialisation": ["M8"],
    "blind-gate": ["M1", "M8"],
    "too-early": ["M1", "M4", "M4-noterm"],
}


@pytest.fixture(scope="module")
def runs():
    return {name: run_experiment(name, scale="ci", seed=5, replicates=R, rounds=T) for name in EXPERIMENTS}


def _stats(prefix, shape):
    return {f"{prefix}/{name}": shape for name in STATISTICS}


def _curves(label):
    shapes = {**_stats(f"{label}/forgetting", (T,)), **_stats(f"{label}/generalization", (T,))}
    shapes.update({f"{label}/T1": (), f"{label}/termination_round": (R,),
                   f"{label}/termination_round_median": (), f"{label}/terminated_share": ()})
    return shapes


def _expected_shapes(name, header):
    shapes = {"rounds": (T,)}
    configs = header["configs"]
    for label in EXPECTED_LABELS[name]:
        shapes.update(_curves(label))
        M, N = configs[label]["M"], configs[label]["N"]
        if name == "termination" or (name == "too-early" and M > 1):
            K = len(header_purity_ends(T))
            if name == "termination":
                shapes.update(_stats(f"{label}/load", (T, M)))
            shapes.update(_stats(f"{label}/purity", (K,)))
            shapes.update(_stats(f"{label}/purity_random", (K,)))
            shapes["purity_window_end"] = (K,)
        if name in ("termination", "blind-gate") or (name == "too-early" and M > 1):
            shapes.update(_stats(f"{label}/purity_final", ()))
            shapes.update(_stats(f"{label}/purity_final_random", ()))
        if name == "specialisation":
            shapes.update({f"{label}/closest_truth": (T, M), f"{label}/covers_all": (T,),
                           f"{label}/covers_all_final": ()})
            shapes.update(_stats(f"{label}/experts_per_truth", (N,)))
    return shapes


def header_purity_ends(rounds):
    window = max(1, rounds // experiments.PURITY_WINDOWS)
    count = min(experiments.PURITY_WINDOWS, rounds // window)
    return rounds - window * np.arange(count - 1, -1, -1)


def test_registry():
    assert list(EXPERIMENTS) == list(EXPECTED_LABELS)
    for name, entry in EXPERIMENTS.items():
        assert entry.name == name and entry.description and "\n" not in entry.description
    assert (SCALES["ci"].replicates, SCALES["ci"].rounds) == (40, 300)
    assert (SCALES["paper"].replicates, SCALES["paper"].rounds) == (500, 2000)


@pytest.mark.parametrize("name", list(EXPECTED_LABELS))
def test_arrays_and_header(runs, name):
    header, arrays = runs[name]
    assert header["experiment"] == name and header["description"] == EXPERIMENTS[name].description
    assert (header["scale"], header["seed"], header["replicates"], header["rounds"]) == ("ci", 5, R, T)
    assert header["labels"] == EXPECTED_LABELS[name] == list(header["configs"])
    assert all(config["T"] == T for config in header["configs"].values())
    expected = _expected_shapes(name, header)
    assert {key: arrays[key].shape for key in arrays} == expected
    assert all(arrays[key].dtype != object for key in arrays)
    # every array is described in the header
    patterns = [re.escape(doc_key).replace(re.escape("{" + ",".join(STATISTICS) + "}"),
                                           "(" + "|".join(map(re.escape, STATISTICS)) + ")")
                for doc_key in header["arrays"]]
    for key in arrays:
        assert any(re.fullmatch(pattern, key) for pattern in patterns), key


@pytest.mark.parametrize("name", list(EXPECTED_LABELS))
def test_values_are_sane(runs, name):
    header, arrays = runs[name]
    np.testing.assert_array_equal(arrays["rounds"], np.arange(1, T + 1))
    for label in header["labels"]:
        assert np.isnan(arrays[f"{label}/forgetting/mean"][0])
        assert np.all(np.isfinite(arrays[f"{label}/forgetting/mean"][1:]))
        assert np.all(arrays[f"{label}/generalization/mean"] >= 0)
        low, mid, high = (arrays[f"{label}/generalization/{p}"] for p in ("p2.5", "p50", "p97.5"))
        assert np.all(low <= mid) and np.all(mid <= high)
        assert arrays[f"{label}/T1"] == header["configs"][label]["T1"]
        share = float(arrays[f"{label}/terminated_share"])
        assert 0.0 <= share <= 1.0
        if label.endswith("-noterm"):
            assert share == 0.0 and np.isnan(arrays[f"{label}/termination_round_median"])
    if name == "termination":
        load = arrays["M8/load/mean"]
        np.testing.assert_allclose(load.sum(axis=1), 1.0)
    if name == "specialisation":
        closest = arrays["M8/closest_truth"]
        assert closest.min() >= 0 and closest.max() < header["configs"]["M8"]["N"]
        np.testing.assert_allclose(arrays["M8/experts_per_truth/mean"].sum(), 8)
    if name == "blind-gate":
        assert header["configs"]["M8"]["v_norm"] == 1.0 and header["configs"]["M8"]["sigma_t"] == 1.0
    if name == "too-early":
        configs = header["configs"]
        assert all(config["sigma0"] == 0.5 for config in configs.values())
        assert configs["M4"]["T1"] == configs["M4-noterm"]["T1"] == 6  # ceil(4 / sqrt(0.5))
        assert configs["M4"]["termination"] == "gap" and configs["M4-noterm"]["termination"] == "none"


def test_deterministic():
    first = run_experiment("termination", scale="ci", seed=11, replicates=R, rounds=T)[1]
    second = run_experiment("termination", scale="ci", seed=11, replicates=R, rounds=T)[1]
    assert set(first) == set(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    other = run_experiment("termination", scale="ci", seed=12, replicates=R, rounds=T)[1]
    assert not np.array_equal(first["M8/generalization/mean"], other["M8/generalization/mean"])


def test_shared_replicates_with_simulate():
    """An experiment's curves are the summaries of `moecl.simulate` with the same seed."""
    import moecl
    from moecl.results import summarise

    arrays = run_experiment("specialisation", scale="ci", seed=2, replicates=R, rounds=T)[1]
    direct = moecl.simulate(moecl.Config(M=8, T=T), replicates=R, seed=2)
    for name, value in summarise(direct.generalization, prefix="M8/generalization").items():
        np.testing.assert_array_equal(arrays[name], value)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="nope"), "unknown experiment 'nope'"),
        (dict(scale="huge"), "unknown scale 'huge'"),
        (dict(seed=-1), "seed=-1"),
        (dict(replicates=1), "replicates=1"),
        (dict(rounds=1), "rounds=1"),
    ],
)
def test_bad_arguments(kwargs, message):
    arguments = dict(name="specialisation", scale="ci", seed=0, replicates=R, rounds=T) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        run_experiment(**arguments)


# --------------------------------------------------------------------------------------
# The committed paper-scale results in results/ (what book/synthetic.md plots)

RESULTS = __import__("pathlib").Path(__file__).resolve().parents[1] / "results"


@pytest.mark.parametrize("name", list(EXPECTED_LABELS))
def test_stored_paper_results_match_the_registry(runs, name):
    """results/<name>-paper-seed0.npz exists and is what the current code would write.

    Same experiment, scale, seed, settings (every `Config` field but T), array names and
    per-replicate shapes as a fresh run; so changing an experiment or a default without
    regenerating the stored results (results/README.md) fails here.
    """
    from moecl.results import load_results

    path = RESULTS / f"{name}-paper-seed0.npz"
    if not path.exists():
        pytest.skip(f"{path} not generated (python -m moecl run {name} --scale paper --out results)")
    header, arrays = load_results(path)
    paper = SCALES["paper"]
    assert (header["experiment"], header["scale"], header["seed"]) == (name, "paper", 0)
    assert header["description"] == EXPERIMENTS[name].description
    assert (header["replicates"], header["rounds"]) == (paper.replicates, paper.rounds)
    fresh_header, fresh_arrays = runs[name]
    assert header["labels"] == fresh_header["labels"]
    for label, config in header["configs"].items():
        fresh = dict(fresh_header["configs"][label], T=paper.rounds)
        assert config == fresh, f"{path.name}: setting {label} differs from the registry's"
    assert set(arrays) == set(fresh_arrays)
    assert arrays["rounds"].shape == (paper.rounds,)
    for label in header["labels"]:
        assert arrays[f"{label}/termination_round"].shape == (paper.replicates,)
    # small: summaries, not per-replicate state
    assert path.stat().st_size < 2_000_000
