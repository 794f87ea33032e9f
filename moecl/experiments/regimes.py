"""The regime map: where expert sets form, over gate signal-to-noise and model gaps (book chapter: regimes)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import Config
from .paper import setting_label
from .recorder import PURITY_WINDOWS, Recorder
from ..metrics import routing_purity
from .registry import experiment, own_scale


@dataclass(frozen=True)
class RegimeGrid:
    """The grid of the regime map at one scale, and its own size preset.

    sigma_t: noise scales of the gate input (the gate's signal-to-noise ratio
    ``beta ||v_n|| / (sigma_t sqrt((s - 1) d))`` varies through them alone);
    sigma0: model gaps (the gate constants and T1 follow from sigma0, `moecl.Config`);
    expert_factors: M as multiples of N (``0.5`` is M = N/2); replicates, rounds:
    the preset R and T (the grid needs fewer than `SCALES` gives single experiments).
    """

    sigma_t: tuple
    sigma0: tuple
    expert_factors: tuple
    replicates: int
    rounds: int


#: The regime map's grid per scale: ``ci`` runs in seconds, ``paper`` in minutes.
REGIME_GRIDS = {
    "ci": RegimeGrid(sigma_t=(3.0, 0.1), sigma0=(0.1, 0.5), expert_factors=(1, 2), replicates=40, rounds=300),
    "paper": RegimeGrid(sigma_t=(10.0, 3.0, 1.0, 0.3, 0.1), sigma0=(0.05, 0.1, 0.2, 0.5),
                        expert_factors=(0.5, 1, 2, 4), replicates=200, rounds=1000),
}


#: Termination rules of the regime map, in the order of its last grid axis.
REGIME_TERMINATION = ("gap", "none")


def gate_snr(config: Config) -> float:
    """The gate's signal-to-noise ratio ``beta ||v_n|| / (sigma_t sqrt((s - 1) d))``.

    The gate sees task t only through ``xbar_t = beta v_{n_t} + sum of s - 1 noise
    columns`` (Eq. (1)); the summed noise has norm about ``sigma_t sqrt((s - 1) d)``.
    """
    return float(config.beta * config.v_norm / (config.sigma_t * np.sqrt((config.s - 1) * config.d)))


def _regimesetting_label(sigma_t: float, sigma0: float, M: int, termination: str) -> str:
    return f"st{sigma_t:g}-s0{sigma0:g}-" + setting_label(M, termination)


def regime_expert_counts(grid: RegimeGrid, N: int) -> list[int]:
    """The expert counts M = factor * N of a grid; they must be distinct and above 1."""
    counts = [max(1, int(round(factor * N))) for factor in grid.expert_factors]
    if len(set(counts)) != len(counts) or 1 in counts:
        raise ValueError(f"expert_factors={grid.expert_factors!r} give the expert counts {counts} for N={N}: "
                         "they must be distinct and above 1")
    return counts


def regime_settings(scale: str, rounds=None) -> list[tuple]:
    """The simulated settings of the regime map at ``scale``, in the order they run.

    A list of ``(label, config, index)``: ``index`` is ``(i, j)`` (positions of
    sigma_t and sigma0) for the single expert M = 1 of a grid point and
    ``(i, j, k, b)`` (plus the positions of M and of the termination rule) for a MoE.
    ``rounds`` overrides the preset T.
    """
    if scale not in REGIME_GRIDS:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(REGIME_GRIDS)}")
    grid = REGIME_GRIDS[scale]
    base = Config(T=grid.rounds if rounds is None else rounds)
    counts = regime_expert_counts(grid, base.N)
    settings = []
    for i, sigma_t in enumerate(grid.sigma_t):
        for j, sigma0 in enumerate(grid.sigma0):
            cell = base.replace(sigma_t=sigma_t, sigma0=sigma0)
            settings.append((_regimesetting_label(sigma_t, sigma0, 1, "gap"), cell.replace(M=1), (i, j)))
            for k, M in enumerate(counts):
                for b, rule in enumerate(REGIME_TERMINATION):
                    config = cell.replace(M=M, termination=rule)
                    settings.append((_regimesetting_label(sigma_t, sigma0, M, rule), config, (i, j, k, b)))
    return settings


def mean_se_into(arrays: dict, docs: dict, key: str, index, values, doc: str) -> None:
    """Store the mean and standard error over replicates of ``values`` (R,) at ``index``."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    mean = finite.mean() if finite.size else np.nan
    se = finite.std(ddof=1) / np.sqrt(finite.size) if finite.size > 1 else np.nan
    arrays[f"{key}/mean"][index] = mean
    arrays[f"{key}/se"][index] = se
    docs[f"{key}/{{mean,se}}"] = doc + " (mean over replicates and its standard error)"


_REGIME_MAP = (
    "grid over the gate's signal-to-noise ratio (sigma_t), sigma0 and M in {N/2, N, 2N, 4N}, with and "
    "without termination: final F_T, G_T against M = 1, routing purity, T2 against T1"
)


@experiment("regime-map", _REGIME_MAP, presets=REGIME_GRIDS, owns={
    "sigma_t": "a grid axis", "sigma0": "a grid axis", "M": "a grid axis", "termination": "a grid axis"})
def regime_map(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """The regime map of book/regimes.md (book chapter: regimes), per-cell summaries only.

    Grid (`REGIME_GRIDS`): ``sigma_t`` (S values; ``grid/snr`` holds the gate
    signal-to-noise ratio `gate_snr` of each), ``sigma0`` (Z values), M = factor * N
    (K values) and the termination rules `REGIME_TERMINATION` (``gap``, ``none``).
    Every cell, and the single expert M = 1 of each (sigma_t, sigma0), is simulated
    with the same seed: the same pool (scaled by sigma0) and the same replicate
    streams, so the difference MoE - single expert is paired per replicate (common
    random numbers). Arrays (means over replicates with standard errors, ``/mean``
    and ``/se``):

    * ``single/generalization``, ``single/forgetting`` (S, Z): G_T and F_T of M = 1;
    * ``moe/generalization``, ``moe/forgetting`` (S, Z, K, 2): G_T, F_T of the MoE;
    * ``moe/generalization_gap``, ``moe/forgetting_gap`` (S, Z, K, 2): the paired
      difference MoE - single expert (negative: the MoE is better);
    * ``moe/purity``, ``moe/purity_random`` (S, Z, K, 2): routing purity over the
      last T // 10 rounds with the expert sets of round T (`moecl.metrics.routing_purity`),
      and what uniformly random routing reaches there;
    * ``moe/purity_excess`` (S, Z, K, 2): ``(purity - random) / (1 - random)`` per
      replicate, 0 for routing blind to the task and 1 for routing always into its set;
    * ``moe/T1`` (Z, K); ``moe/terminated_share`` (S, Z, K, 2); ``moe/T2_median``
      (S, Z, K, 2), the median termination round over the replicates that terminated
      (NaN: none); ``moe/T2_minus_T1`` (S, Z, K, 2), mean and se of T2 - T1 over them.
    """
    R, T = own_scale(REGIME_GRIDS, scale, replicates, rounds)
    grid = REGIME_GRIDS[scale]
    run = Recorder("regime-map", scale, seed, R, T, progress, overrides)
    settings = regime_settings(scale, rounds=run.T)
    base = run.base()
    counts = regime_expert_counts(grid, base.N)
    S, Z, K, B = len(grid.sigma_t), len(grid.sigma0), len(counts), len(REGIME_TERMINATION)
    run.planned = len(settings)
    window = max(1, run.T // PURITY_WINDOWS)

    arrays, docs = run.arrays, run.docs
    del arrays["rounds"], docs["rounds"]  # per-cell summaries only: no per-round arrays
    run.add("grid/sigma_t", np.array(grid.sigma_t, dtype=float), "noise scale sigma_t of the gate input, axis 0")
    run.add("grid/snr", np.array([gate_snr(base.replace(sigma_t=value)) for value in grid.sigma_t]),
            "gate signal-to-noise ratio beta ||v_n|| / (sigma_t sqrt((s-1) d)) of each sigma_t, axis 0")
    run.add("grid/sigma0", np.array(grid.sigma0, dtype=float), "model gap sigma0, axis 1")
    run.add("grid/M", np.array(counts), "number of experts M, axis 2")
    run.add("grid/terminates", np.array([rule != "none" for rule in REGIME_TERMINATION]),
            f"early termination on (the rules {list(REGIME_TERMINATION)}), axis 3")
    for key, shape in [("single/generalization", (S, Z)), ("single/forgetting", (S, Z))] + [
        (f"moe/{name}", (S, Z, K, B))
        for name in ("generalization", "forgetting", "generalization_gap", "forgetting_gap", "purity",
                     "purity_random", "purity_excess", "T2_minus_T1")
    ]:
        arrays[f"{key}/mean"] = np.full(shape, np.nan)
        arrays[f"{key}/se"] = np.full(shape, np.nan)
    run.add("moe/T1", np.zeros((Z, K), dtype=np.int64), "length T1 = ceil(M / eta) of the exploration phase, (Z, K)")
    terminated = np.zeros((S, Z, K, B))
    T2_median = np.full((S, Z, K, B), np.nan)

    # Settings that differ only in sigma_t and sigma0 run as one batch (`simulate_many`);
    # the single experts (the first settings) come first, so the paired references exist.
    singles = {}
    for label, result, at in run.simulate_batched(settings):
        config = result.config
        if len(at) == 2:  # the single expert of this (sigma_t, sigma0): the paired reference
            G1, F1 = singles[at] = result.generalization[:, -1], result.forgetting[:, -1]
            mean_se_into(arrays, docs, "single/generalization", at, G1, "final G_T of one expert, (S, Z)")
            mean_se_into(arrays, docs, "single/forgetting", at, F1, "final F_T of one expert, (S, Z)")
            continue
        G1, F1 = singles[at[:2]]
        arrays["moe/T1"][at[1], at[2]] = config.T1
        G, F = result.generalization[:, -1], result.forgetting[:, -1]
        mean_se_into(arrays, docs, "moe/generalization", at, G, "final G_T of the MoE, (S, Z, K, 2)")
        mean_se_into(arrays, docs, "moe/forgetting", at, F, "final F_T of the MoE, (S, Z, K, 2)")
        mean_se_into(arrays, docs, "moe/generalization_gap", at, G - G1,
                      "paired G_T(MoE) - G_T(M = 1) on the same replicate, (S, Z, K, 2)")
        mean_se_into(arrays, docs, "moe/forgetting_gap", at, F - F1,
                      "paired F_T(MoE) - F_T(M = 1) on the same replicate, (S, Z, K, 2)")
        purity, random = routing_purity(result, window, per_replicate=True)
        mean_se_into(arrays, docs, "moe/purity", at, purity,
                      f"routing purity over the last {window} rounds, sets of round T, (S, Z, K, 2)")
        mean_se_into(arrays, docs, "moe/purity_random", at, random,
                      f"purity of uniformly random routing over the same {window} rounds, (S, Z, K, 2)")
        excess = (purity - random) / np.where(random < 1, 1 - random, np.nan)
        mean_se_into(arrays, docs, "moe/purity_excess", at, excess,
                      "excess purity (purity - random) / (1 - random) per replicate: 0 for routing "
                      "blind to the task, 1 for routing always into the task's set, (S, Z, K, 2)")
        stops = result.termination_round
        stopped = stops[stops >= 0]
        terminated[at] = stopped.size / stops.size
        if stopped.size:
            T2_median[at] = np.median(stopped)
        mean_se_into(arrays, docs, "moe/T2_minus_T1", at, np.where(stops >= 0, stops - config.T1, np.nan),
                      "T2 - T1 over the replicates that terminated, (S, Z, K, 2)")
    run.add("moe/terminated_share", terminated, "share of replicates whose gate terminated, (S, Z, K, 2)")
    run.add("moe/T2_median", T2_median,
            "median termination round T2 over the replicates that terminated (NaN: none), (S, Z, K, 2)")
    return run.finish(_REGIME_MAP)


#: The regions of the regime map (`regime_regions`), in the order of their codes 0..3.
REGIONS = (
    "no specialisation",
    "specialisation kept only with termination",
    "premature termination",
    "specialised with or without termination",
)


#: Book choice: excess routing purity (`moecl.metrics.routing_purity`, rescaled so that
#: random routing is 0 and routing always into the task's set is 1) from which a run
#: counts as specialised.
SPECIALISATION_THRESHOLD = 0.2


#: Book choice: z-score from which the purities with and without termination differ.
REGION_Z = 3.0


def regime_regions(arrays: dict, threshold: float = SPECIALISATION_THRESHOLD, z: float = REGION_Z) -> np.ndarray:
    """Region code (S, Z, K) of every cell of a regime map (index into `REGIONS`).

    With ``e_on``, ``e_off`` the excess purities (``moe/purity_excess``) with and
    without termination and ``z_diff = (e_on - e_off) / sqrt(se_on^2 + se_off^2)``:

    * 0, no specialisation: ``max(e_on, e_off) < threshold``;
    * 2, premature termination: otherwise, if ``z_diff <= -z`` (the gate frozen by the
      termination rule routes less purely than the gate that keeps training: it stopped
      before the expert sets had formed, the book's regimes chapter);
    * 1, specialisation kept only with termination: otherwise, if ``z_diff >= z`` and
      ``e_on >= threshold`` (Proposition 2: without termination the gate that keeps
      training undoes the routing; the paper blames the load-balancing loss, but the
      book's ablation chapter shows that the locality loss alone does it, alpha = 0
      included);
    * 3, specialised with or without termination: the rest.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold={threshold!r} must lie strictly between 0 and 1")
    if not z > 0:
        raise ValueError(f"z={z!r} must be positive")
    mean, se = arrays["moe/purity_excess/mean"], arrays["moe/purity_excess/se"]
    if mean.ndim != 4 or mean.shape[-1] != 2 or not np.array_equal(arrays["grid/terminates"], [True, False]):
        raise ValueError(f"arrays do not hold a regime map (moe/purity_excess/mean has shape {mean.shape})")
    e_on, e_off = mean[..., 0], mean[..., 1]
    z_diff = (e_on - e_off) / np.sqrt(se[..., 0] ** 2 + se[..., 1] ** 2)
    regions = np.full(e_on.shape, 3, dtype=np.int64)
    regions[(z_diff >= z) & (e_on >= threshold)] = 1
    regions[z_diff <= -z] = 2
    regions[np.maximum(e_on, e_off) < threshold] = 0
    return regions
