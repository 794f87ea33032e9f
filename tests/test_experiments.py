"""Registered experiments: every one runs at a tiny scale with the documented arrays."""

import math
import re

import numpy as np
import pytest

import moecl
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
    # deep experiments and predictions (T1 grid to 104 > T): their own tests
    linear = [name for name, entry in EXPERIMENTS.items() if not entry.device and name != "predictions"]
    return {name: run_experiment(name, scale="ci", seed=5, replicates=R, rounds=T) for name in linear}


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
    assert list(EXPERIMENTS) == list(EXPECTED_LABELS) + ["regime-map", "drift", "deep-methods", "predictions",
                                                         "deep-paper"]
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

@pytest.mark.parametrize("name", list(EXPECTED_LABELS))
def test_stored_paper_results_match_the_registry(runs, name, stored_paper_results, same_setting):
    """results/<name>-paper-seed0.npz exists and is what the current code would write.

    Same experiment, scale, seed, settings (every `Config` field but T), array names and
    per-replicate shapes as a fresh run; so changing an experiment or a default without
    regenerating the stored results (results/README.md) fails here.
    """
    paper = SCALES["paper"]
    header, arrays, path = stored_paper_results(name, paper.replicates, paper.rounds)
    fresh_header, fresh_arrays = runs[name]
    assert header["labels"] == fresh_header["labels"]
    for label, config in header["configs"].items():
        fresh = dict(fresh_header["configs"][label], T=paper.rounds)
        assert same_setting(config, fresh), f"{path.name}: setting {label} differs from the registry's"
    assert set(arrays) == set(fresh_arrays)
    assert arrays["rounds"].shape == (paper.rounds,)
    for label in header["labels"]:
        assert arrays[f"{label}/termination_round"].shape == (paper.replicates,)
    # small: summaries, not per-replicate state
    assert path.stat().st_size < 2_000_000


# --------------------------------------------------------------------------------------
# The regime map (book/regimes.md): a grid of per-cell summaries

from moecl.experiments import REGIME_GRIDS, REGIME_TERMINATION, gate_snr, regime_settings  # noqa: E402

MOE_QUANTITIES = ("generalization", "forgetting", "generalization_gap", "forgetting_gap", "purity",
                  "purity_random", "purity_excess", "T2_minus_T1")


def _regime_shapes(grid):
    S, Z, K, B = len(grid.sigma_t), len(grid.sigma0), len(grid.expert_factors), len(REGIME_TERMINATION)
    shapes = {"grid/sigma_t": (S,), "grid/snr": (S,), "grid/sigma0": (Z,), "grid/M": (K,),
              "grid/terminates": (B,), "moe/T1": (Z, K), "moe/terminated_share": (S, Z, K, B),
              "moe/T2_median": (S, Z, K, B)}
    for name in ("generalization", "forgetting"):
        shapes.update({f"single/{name}/mean": (S, Z), f"single/{name}/se": (S, Z)})
    for name in MOE_QUANTITIES:
        shapes.update({f"moe/{name}/mean": (S, Z, K, B), f"moe/{name}/se": (S, Z, K, B)})
    return shapes


def test_regime_map_arrays_and_header(runs):
    header, arrays = runs["regime-map"]
    grid = REGIME_GRIDS["ci"]
    assert header["description"] == EXPERIMENTS["regime-map"].description
    assert (header["scale"], header["seed"], header["replicates"], header["rounds"]) == ("ci", 5, R, T)
    assert {key: arrays[key].shape for key in arrays} == _regime_shapes(grid)
    assert all(arrays[key].dtype != object for key in arrays)
    settings = regime_settings("ci", rounds=T)
    assert header["labels"] == [label for label, _, _ in settings] == list(header["configs"])
    assert len(settings) == len(grid.sigma_t) * len(grid.sigma0) * (1 + 2 * len(grid.expert_factors))
    for label, config, _ in settings:
        assert header["configs"][label] == config.as_dict()
    for key in arrays:  # every array is described in the header
        assert key in header["arrays"] or key.rsplit("/", 1)[0] + "/{mean,se}" in header["arrays"], key


def test_regime_map_values(runs):
    header, arrays = runs["regime-map"]
    grid = REGIME_GRIDS["ci"]
    np.testing.assert_array_equal(arrays["grid/sigma_t"], grid.sigma_t)
    np.testing.assert_array_equal(arrays["grid/sigma0"], grid.sigma0)
    np.testing.assert_array_equal(arrays["grid/M"], [round(f * 4) for f in grid.expert_factors])
    np.testing.assert_array_equal(arrays["grid/terminates"], [True, False])
    # SNR = beta ||v|| / (sigma_t sqrt((s-1) d)) = sqrt(20) / (10 sigma_t) at the defaults
    np.testing.assert_allclose(arrays["grid/snr"], np.sqrt(20) / (10 * np.asarray(grid.sigma_t)))
    assert gate_snr(moecl_config(sigma_t=0.1)) == pytest.approx(np.sqrt(20))  # 4.47 against 1
    # the paired difference's mean is the difference of the means (same replicates, none missing)
    for name in ("generalization", "forgetting"):
        np.testing.assert_allclose(arrays[f"moe/{name}_gap/mean"],
                                   arrays[f"moe/{name}/mean"] - arrays[f"single/{name}/mean"][:, :, None, None])
        assert np.all(arrays[f"moe/{name}_gap/se"] > 0)
    purity, random = arrays["moe/purity/mean"], arrays["moe/purity_random/mean"]
    assert np.all((0 <= purity) & (purity <= 1)) and np.all((0 < random) & (random <= 1))
    assert np.all(arrays["moe/purity_excess/mean"] <= 1)
    assert np.all(arrays["moe/generalization/mean"] >= 0)
    # the gate without termination never stops; T2 > T1 wherever it stopped
    assert np.all(arrays["moe/terminated_share"][..., 1] == 0)
    assert np.all(np.isnan(arrays["moe/T2_median"][..., 1]))
    share = arrays["moe/terminated_share"][..., 0]
    assert np.all((0 <= share) & (share <= 1))
    T1 = arrays["moe/T1"][None, :, :]
    stopped = share > 0
    assert np.all(arrays["moe/T2_median"][..., 0][stopped] > np.broadcast_to(T1, share.shape)[stopped])
    assert np.all(arrays["moe/T2_minus_T1/mean"][..., 0][stopped] >= 1)
    for label, config in header["configs"].items():
        assert config["T1"] == math.ceil(config["M"] / config["eta"])


def moecl_config(**fields):

    return moecl.Config(**fields)


def test_regime_map_cell_is_the_paired_simulation():
    """One cell of the map is `moecl.simulate` of its config, paired with M = 1 on the same seed."""
    from moecl.metrics import mean_se

    header, arrays = run_experiment("regime-map", scale="ci", seed=4, replicates=R, rounds=T)
    (label1, single_config, (i, j)), (label, config, at) = regime_settings("ci", rounds=T)[:2]
    single = moecl.simulate(single_config, replicates=R, seed=4)
    moe = moecl.simulate(config, replicates=R, seed=4)
    assert at == (i, j, 0, 0) and config.M == arrays["grid/M"][0] and config.termination == "gap"
    mean, se = mean_se(moe.generalization[:, -1] - single.generalization[:, -1])
    assert arrays["moe/generalization_gap/mean"][at] == pytest.approx(mean)
    assert arrays["moe/generalization_gap/se"][at] == pytest.approx(se)
    assert arrays["single/forgetting/mean"][i, j] == pytest.approx(np.mean(single.forgetting[:, -1]))


def test_regime_map_deterministic():
    first = run_experiment("regime-map", scale="ci", seed=7, replicates=2, rounds=12)[1]
    second = run_experiment("regime-map", scale="ci", seed=7, replicates=2, rounds=12)[1]
    assert set(first) == set(second)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    other = run_experiment("regime-map", scale="ci", seed=8, replicates=2, rounds=12)[1]
    assert not np.array_equal(first["moe/generalization/mean"], other["moe/generalization/mean"])


@pytest.mark.parametrize("kwargs, message", [(dict(scale="huge"), "unknown scale 'huge'"),
                                             (dict(replicates=1), "replicates=1"),
                                             (dict(seed=-2), "seed=-2")])
def test_regime_map_bad_arguments(kwargs, message):
    arguments = dict(name="regime-map", scale="ci", seed=0, replicates=R, rounds=T) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        run_experiment(**arguments)


def test_regime_map_paper_grid_is_large_enough():
    """The issue's paper scale: at least 200 replicates per cell, T >= 1000, M in {N/2, N, 2N, 4N}."""
    grid = REGIME_GRIDS["paper"]
    assert grid.replicates >= 200 and grid.rounds >= 1000
    assert tuple(grid.expert_factors) == (0.5, 1, 2, 4)
    snr = [gate_snr(moecl_config(sigma_t=value)) for value in grid.sigma_t]
    assert min(snr) < 0.2 and max(snr) > 3  # from a blind gate to the book's default regime


def test_stored_regime_map_matches_the_registry(runs, stored_paper_results, same_setting):
    """results/regime-map-paper-seed0.npz exists and is what the current code would write."""
    grid = REGIME_GRIDS["paper"]
    header, arrays, path = stored_paper_results("regime-map", grid.replicates, grid.rounds)
    settings = regime_settings("paper")
    assert header["labels"] == [label for label, _, _ in settings]
    for label, config, _ in settings:
        assert same_setting(header["configs"][label], config.as_dict()), f"{path.name}: setting {label} differs"
    assert set(arrays) == set(runs["regime-map"][1])
    assert {key: arrays[key].shape for key in arrays} == _regime_shapes(grid)
    assert path.stat().st_size < 200_000


def test_regime_regions_classifies_each_case():
    from moecl.experiments import REGIONS, regime_regions

    # four cells (S = 4, Z = K = 1): blind; kept only with termination; premature; either way
    on = np.array([0.05, 0.6, 0.4, 0.9])
    off = np.array([0.1, 0.02, 0.9, 0.88])
    se = np.full((4, 1, 1, 2), 0.02)
    arrays = {"moe/purity_excess/mean": np.stack([on, off], axis=-1)[:, None, None, :],
              "moe/purity_excess/se": se, "grid/terminates": np.array([True, False])}
    regions = regime_regions(arrays)
    assert regions.shape == (4, 1, 1)
    assert [REGIONS[code] for code in regions.ravel()] == list(REGIONS)
    # a purity difference within the noise is no region boundary
    arrays["moe/purity_excess/se"] = np.full((4, 1, 1, 2), 0.5)
    assert list(regime_regions(arrays).ravel()) == [0, 3, 3, 3]
    with pytest.raises(ValueError, match="threshold=1.5"):
        regime_regions(arrays, threshold=1.5)
    with pytest.raises(ValueError, match="z=0"):
        regime_regions(arrays, z=0)
    with pytest.raises(ValueError, match="regime map"):
        regime_regions({**arrays, "moe/purity_excess/mean": np.zeros((4, 2))})


def test_deep_methods_from_the_registry(tmp_path):
    """Every deep method runs through the registry (and so from the command line)."""
    header, arrays = run_experiment("deep-methods", scale="ci", seed=1, replicates=2, rounds=2)
    assert header["labels"] == list(experiments.DEEP_METHODS) and header["seeds"] == [1, 2]
    assert header["source"].startswith(("MNIST", "scikit-learn digits"))  # which digits it ran on
    for label, (method, M) in experiments.DEEP_METHODS.items():
        assert (header["configs"][label]["method"], header["configs"][label]["M"]) == (method, M)
        for scenario in ("task", "class"):
            A = arrays[f"{label}/{scenario}/average_accuracy"]
            matrix = arrays[f"{label}/{scenario}/accuracy_matrix"]
            assert A.shape == (2,) and matrix.shape == (2, 2, 2)
            np.testing.assert_allclose(A, np.nanmean(matrix[:, -1], axis=1))  # recomputed from R[T, i]
    with pytest.raises(ValueError, match="M: deep-methods sets M itself"):
        run_experiment("deep-methods", overrides={"M": 2})
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        run_experiment("deep-methods", scale="huge")
