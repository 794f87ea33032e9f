"""The theory's dependences on grids of one parameter (book chapter: where the theory's predictions hold).

One experiment, ``predictions``: Algorithm 1 (`moecl.simulate`) beside the closed form
of the phase model (`moecl.theory.phase_model.phase_model_expectations` with the book's
balanced routing, the expectations of Theorems 1-2) and beside the phase model fed the
routing Algorithm 1 measured after T1 (`expectations_over_routings`), on four grids
around the package defaults (d = 20, s = 6, N = 4, M = 8, sigma0 = 0.1):

* ``T1``: the exploration length T1 in `T1_GRID` at M = 8 (T1 given explicitly);
* ``NM``: N in `N_GRID` times M in `M_GRID` (T1 = ceil(M / eta));
* ``sigma0``: sigma0 in `SIGMA0_GRID`, the gate constants derived from it (book choice);
* ``gap``: sigma0 in `SIGMA0_GRID` with the gate constants (eta, alpha, lambda, Gamma,
  T1) fixed at their sigma0 = 0.1 values, so only the model gaps change.

Every setting uses the same seed: for one N the pools differ only by the factor
sigma0 and the replicates are paired across a grid (common random numbers).
"""

from __future__ import annotations

import numpy as np

from ..config import Config
from ..metrics import mean_se, routing_purity
from ..theory.phase_model import default_routing, expectations_over_routings, measured_routing, phase_model_expectations
from .recorder import Recorder
from .registry import experiment

T1_GRID = (5, 13, 26, 52, 104)
N_GRID = (2, 4, 8, 16)
M_GRID = (2, 4, 8, 16, 32)
SIGMA0_GRID = (0.05, 0.1, 0.2, 0.4)
#: The default cell whose per-round curves are stored (label).
DEFAULT_LABEL = "NM-N4-M8"

_DESCRIPTION = ("Algorithm 1 against the phase model's closed form and the phase model with the measured "
                "routing, over T1, N x M, sigma0 (constants derived) and the model gaps (constants fixed)")


def prediction_settings(base: Config) -> list[tuple[str, str, Config]]:
    """(grid, label, config) of every setting, in order (module docstring)."""
    settings = [("T1", f"T1-{T1}", base.replace(M=8, T1=T1)) for T1 in T1_GRID]
    settings += [("NM", f"NM-N{N}-M{M}", base.replace(N=N, M=M)) for N in N_GRID for M in M_GRID]
    settings += [("sigma0", f"sigma0-{s0:g}", base.replace(sigma0=s0)) for s0 in SIGMA0_GRID]
    fixed = {name: getattr(base, name) for name in ("eta", "alpha", "lambda_", "Gamma", "T1")}
    settings += [("gap", f"gap-{s0:g}", base.replace(sigma0=s0, **fixed)) for s0 in SIGMA0_GRID]
    return settings


@experiment("predictions", _DESCRIPTION, owns={
    "M": "it sweeps M", "N": "it sweeps N", "T1": "it sweeps T1", "sigma0": "it sweeps sigma0",
    "eta": "the gap grid fixes it", "alpha": "the gap grid fixes it", "lambda_": "the gap grid fixes it",
    "Gamma": "the gap grid fixes it"})
def predictions(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """The grids of the module docstring. Arrays per label (R replicates):

    ``G_T``, ``F_T`` (R,) Algorithm 1 at t = T; ``T2`` (R,) termination round (-1: never);
    ``coverage`` (R,) 1 when every truth is closest to some expert at T; ``purity``,
    ``purity_random`` (R,) over the last T/10 rounds; ``closed_G_T``, ``closed_F_T``: the
    phase model with the book's routing; ``measured_G_T``, ``measured_F_T``: the phase
    model with each replicate's routing of rounds T1 + 1 .. T; ``T1``; ``W`` (N, d) the
    pool. For ``NM-N4-M8`` also the curves ``curve/{alg,closed,measured}/{G,F}`` (T,) and
    ``curve/alg/{G,F}_se``. ``grid/<name>`` lists each grid's labels.
    """
    run = Recorder("predictions", scale, seed, replicates, rounds, progress, overrides)
    base = run.base()
    settings = prediction_settings(base)
    run.planned = len(settings)
    grids: dict[str, list[str]] = {}
    for grid, label, config in settings:
        grids.setdefault(grid, []).append(label)
        result = run.simulate(label, config, f"{grid}: {label}")
        config = result.config
        W, r = result.pool.W, 1 - config.s / config.d
        closed = phase_model_expectations(W, r, config.M, config.T, config.T1, Q2=default_routing(config.N, config.M))
        Q2s = measured_routing(result.tasks, result.experts, config.N, config.M, start=config.T1)
        measured = expectations_over_routings(W, r, config.M, config.T, config.T1, Q2s)
        purity, random = routing_purity(result, max(1, config.T // 10), per_replicate=True)
        closest = result.closest_truth[:, -1]
        covers = np.array([np.unique(row).size == config.N for row in closest], dtype=float)
        run.add(f"{label}/G_T", result.generalization[:, -1], "Algorithm 1's G_T per replicate")
        run.add(f"{label}/F_T", result.forgetting[:, -1], "Algorithm 1's F_T per replicate")
        run.add(f"{label}/T2", result.termination_round, "termination round T2 per replicate (-1: never)")
        run.add(f"{label}/coverage", covers, "1 when every truth is closest to some expert at T, per replicate")
        run.add(f"{label}/purity", purity, "routing purity over the last T/10 rounds, per replicate")
        run.add(f"{label}/purity_random", random, "purity of random routing over the same rounds")
        for name, key in (("G", "generalization"), ("F", "forgetting")):
            run.add(f"{label}/closed_{name}_T", closed[key][-1], f"phase model, book routing: E[{name}_T]")
            run.add(f"{label}/measured_{name}_T", measured[key][-1], f"phase model, measured routing: E[{name}_T]")
        run.add(f"{label}/T1", config.T1, "exploration length T1")
        run.add(f"{label}/W", W, "the pool's ground truths (N, d)")
        if label == DEFAULT_LABEL:
            for name, key in (("G", "generalization"), ("F", "forgetting")):
                mean, se = mean_se(getattr(result, key))
                run.add(f"curve/alg/{name}", mean, f"Algorithm 1's mean {name}_t (NaN: F_1)")
                run.add(f"curve/alg/{name}_se", se, "its standard error")
                run.add(f"curve/closed/{name}", closed[key], f"phase model, book routing: E[{name}_t]")
                run.add(f"curve/measured/{name}", measured[key], f"phase model, measured routing: E[{name}_t]")
    for grid, labels in grids.items():
        run.add(f"grid/{grid}", np.array(labels), f"labels of the {grid} grid, in grid order")
    return run.finish(_DESCRIPTION)
