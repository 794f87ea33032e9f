"""moecl.theory.predictions and the `predictions` experiment (book chapter: predictions)."""

import math

import numpy as np
import pytest

from moecl.experiments import EXPERIMENTS, run_experiment
from moecl.theory.phase_model import default_routing
from moecl.theory.predictions import (
    coverage_probability,
    gap_explained,
    log_slope,
    mixed_routing,
    step_power,
    step_verdict,
)


def test_coverage_probability_against_enumeration():
    # N = 3, M = 4: count the 3^4 assignments covering all truths (36 of 81)
    assert coverage_probability(3, 4) == pytest.approx(36 / 81, abs=1e-12)
    assert coverage_probability(4, 3) == pytest.approx(0.0, abs=1e-12)
    assert coverage_probability(1, 5) == pytest.approx(1.0)


def test_coverage_probability_against_monte_carlo():
    rng = np.random.default_rng(1)
    draws = rng.integers(0, 5, size=(20000, 9))
    covered = np.mean([np.unique(row).size == 5 for row in draws])
    assert abs(covered - coverage_probability(5, 9)) < 4 * math.sqrt(0.25 / 20000)


def test_step_verdict_kinds():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, 400)) * 0.1
    rising = np.stack([noise[k] + k for k in range(4)])  # each step +1
    assert step_verdict([0, 1, 2, 3], rising)["verdict"] == "holds"
    assert step_verdict([3, 2, 1, 0], rising)["verdict"] == "does not hold"
    assert [s["kind"] for s in step_verdict([3, 2, 1, 0], rising)["steps"]] == ["opposes"] * 3
    bent = np.stack([noise[0], noise[1] - 1, noise[2] - 1, noise[3] + 1])
    out = step_verdict([0, 1, 2, 3], bent)
    assert out["verdict"] == "holds in a regime"
    assert [s["kind"] for s in out["steps"]] == ["opposes", "flat", "agrees"]


def test_step_verdict_untested_when_underpowered():
    rng = np.random.default_rng(2)
    flat = rng.standard_normal((2, 50))
    out = step_verdict([0.0, 1e-3], flat)
    assert out["steps"][0]["kind"] == "untested" and out["verdict"] == "not tested"


def test_step_power():
    assert step_power(3.0, 1.0) == pytest.approx(0.5)
    assert step_power(-5.0, 1.0) > 0.97
    with pytest.raises(ValueError, match="se="):
        step_power(1.0, 0.0)


def test_log_slope_recovers_a_power_law():
    x = np.array([2.0, 4, 8, 16])
    slope, se = log_slope(x, 1.5 * np.log(x) + 0.3, np.full(4, 0.01))
    assert slope == pytest.approx(1.5) and 0 < se < 0.01


def test_gap_explained():
    assert gap_explained(1.0, 0.0, 0.9) == pytest.approx(0.9)
    assert gap_explained(1.0, 0.0, 0.0) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no gap"):
        gap_explained(1.0, 1.0, 0.5)


def test_mixed_routing_limits():
    np.testing.assert_allclose(mixed_routing(4, 8, 1.0), default_routing(4, 8))
    np.testing.assert_allclose(mixed_routing(4, 8, 2 / 8), np.full((4, 8), 1 / 8))
    Q2 = mixed_routing(4, 8, 0.7)
    np.testing.assert_allclose(Q2.sum(axis=1), 1.0)
    assert Q2[0, 0] == pytest.approx(0.35) and Q2[0, 1] == pytest.approx(0.3 / 6)
    with pytest.raises(ValueError, match="purity"):
        mixed_routing(4, 8, 1.5)


def test_predictions_experiment_small():
    assert "predictions" in EXPERIMENTS
    header, arrays = run_experiment("predictions", scale="ci", seed=0, replicates=3, rounds=120)
    labels = list(arrays["grid/T1"])
    assert labels == ["T1-5", "T1-13", "T1-26", "T1-52", "T1-104"]
    assert len(header["labels"]) == 5 + 20 + 4 + 4
    for label in header["labels"]:
        assert arrays[f"{label}/G_T"].shape == (3,)
        assert np.isfinite(arrays[f"{label}/closed_G_T"]) and np.isfinite(arrays[f"{label}/measured_G_T"])
    # the gap grid fixes the gate constants, the sigma0 grid derives them
    assert header["configs"]["gap-0.4"]["eta"] == header["configs"]["gap-0.05"]["eta"]
    assert header["configs"]["sigma0-0.4"]["eta"] != header["configs"]["sigma0-0.05"]["eta"]
    # common seed: the pools of one N differ only by sigma0
    np.testing.assert_allclose(arrays["gap-0.4/W"], 4 * arrays["gap-0.1/W"])
    assert arrays["curve/alg/G"].shape == (120,)


def test_predictions_refuses_owned_override():
    with pytest.raises(ValueError, match="T1"):
        run_experiment("predictions", scale="ci", seed=0, replicates=2, rounds=50, overrides={"T1": 3})
