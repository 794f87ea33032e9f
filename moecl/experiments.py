"""Named experiments of the synthetic study (THEORY.md section 6), ready to run and save.

Each experiment is a function ``(scale, seed, replicates=None, progress=False,
rounds=None) -> (header, arrays)`` built on `moecl.simulate`; `EXPERIMENTS` maps
names to them and `run_experiment` calls one by name. ``header`` is the JSON header
of a results file (`moecl.results`) and ``arrays`` its arrays, so::

    header, arrays = moecl.experiments.run_experiment("termination", scale="ci", seed=0)
    moecl.results.save_results("termination.npz", header, arrays)

is what ``python -m moecl run termination`` does.

Scales (`SCALES`): ``"ci"`` runs in seconds (R = 40 replicates, T = 300 rounds),
``"paper"`` is the full size (R = 500, T = 2000). ``replicates`` and ``rounds``
override the preset (``rounds`` exists for quick tests). The ``regime-map`` experiment,
a grid of 180 settings at paper scale, has its own presets and grids (`REGIME_GRIDS`:
R = 40, T = 300 and R = 200, T = 1000), and `regime_regions` classifies its cells.

Every setting of one experiment is simulated with the same seed, hence the same
pool of ground truths and the same per-replicate random streams (common random
numbers), so differences between settings are not noise between pools.

Array names are ``<label>/<quantity>[/<statistic>]`` where ``label`` names a setting
(``M8``: M = 8 with early termination, ``M8-noterm``: without) and per-round
quantities are summarised over replicates by `moecl.results.summarise` (``mean``,
``se``, ``p2.5``, ``p50``, ``p97.5``). The header's ``arrays`` field describes
every array, ``labels`` lists the settings in order and ``configs`` gives each
setting's full `Config`.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .algorithm import BATCHABLE_FIELDS, SimulationResult, simulate, simulate_many
from .config import Config
from .metrics import routing_purity
from .results import STATISTICS, make_header, summarise


@dataclass(frozen=True)
class Scale:
    """A size preset: replicates R and rounds T."""

    replicates: int
    rounds: int


#: Size presets. ``ci``: seconds on a laptop; ``paper``: the full-size runs of the book.
SCALES = {"ci": Scale(replicates=40, rounds=300), "paper": Scale(replicates=500, rounds=2000)}

#: Number of equal windows over which routing purity is measured along the rounds.
PURITY_WINDOWS = 10

#: Memory budget of one batch of `_Run.simulate_batched` (per-round records), bytes.
BATCH_BYTES = 4e8


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: its name, a one-line description and the function."""

    name: str
    description: str
    function: Callable


#: The registry: experiment name -> `Experiment`, in the order they were defined.
EXPERIMENTS: dict[str, Experiment] = {}


def experiment(name: str, description: str):
    """Decorator registering an experiment function under ``name``."""

    def register(function):
        if name in EXPERIMENTS:
            raise ValueError(f"experiment {name!r} is registered twice")
        EXPERIMENTS[name] = Experiment(name, description, function)
        return function

    return register


def run_experiment(name: str, scale: str = "ci", seed: int = 0, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Run the registered experiment ``name``; returns ``(header, arrays)``.

    ``overrides`` ({field: value}) changes `Config` fields in every setting of the
    experiment, e.g. ``{"balance_loss": "entropy"}``; a field the experiment sets or
    varies itself cannot be overridden (ValueError).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name].function(
        scale, seed, replicates=replicates, progress=progress, rounds=rounds, overrides=overrides
    )


def resolve_scale(scale: str, replicates=None, rounds=None) -> tuple[int, int]:
    """(R, T) of a preset, with optional overrides; checks them."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")
    preset = SCALES[scale]
    R = preset.replicates if replicates is None else replicates
    T = preset.rounds if rounds is None else rounds
    if isinstance(R, bool) or not isinstance(R, (int, np.integer)) or R < 2:
        raise ValueError(f"replicates={R!r} must be an integer of at least 2 (standard errors need two)")
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 2:
        raise ValueError(f"rounds={T!r} must be an integer of at least 2")
    return int(R), int(T)


def _own_scale(presets: dict, scale: str, replicates=None, rounds=None) -> tuple:
    """(R, T) of an experiment with its own presets (``replicates``/``rounds`` attributes);
    the overrides are checked by `_Run`."""
    if scale not in presets:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(presets)}")
    preset = presets[scale]
    return (preset.replicates if replicates is None else replicates,
            preset.rounds if rounds is None else rounds)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    return int(seed)


# --------------------------------------------------------------------------------------
# Shared building blocks


class _Run:
    """Collects the simulated settings of one experiment into a header and arrays."""

    def __init__(self, name: str, scale: str, seed: int, replicates, rounds, progress: bool, overrides=None):
        self.name = name
        self.overrides = dict(overrides or {})
        unknown = sorted(set(self.overrides) - set(Config.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a field of moecl.Config")
        self.scale = scale
        self.seed = _check_seed(seed)
        self.R, self.T = resolve_scale(scale, replicates, rounds)
        self.progress = progress
        self.started = time.perf_counter()
        self.configs: dict[str, Config] = {}
        self.wall_times: dict[str, float] = {}
        self.arrays: dict[str, np.ndarray] = {"rounds": np.arange(1, self.T + 1)}
        self.docs: dict[str, str] = {"rounds": "round numbers t = 1..T"}
        self.planned = 0

    def base(self, **fields) -> Config:
        return Config(T=self.T, **fields)

    def register(self, label: str, config: Config) -> Config:
        """Record setting ``label`` with the overrides applied; returns the config to run."""
        if self.overrides:
            default = Config(T=config.T)
            for field, value in self.overrides.items():
                if getattr(config, field) != getattr(default, field):
                    raise ValueError(
                        f"{self.name} sets {field} itself ({field}={getattr(config, field)!r} in setting "
                        f"{label}); it cannot be overridden"
                    )
            config = config.replace(**self.overrides)
        self.configs[label] = config
        return config

    def simulate(self, label: str, config: Config, what: str) -> SimulationResult:
        """Simulate one setting (announcing it when progress is on), with the overrides applied."""
        config = self.register(label, config)
        if self.progress:
            print(f"[{len(self.configs)}/{self.planned}] {label}: {what}", file=sys.stderr, flush=True)
        result = simulate(config, replicates=self.R, seed=self.seed, progress=self.progress)
        self.wall_times[label] = round(result.wall_time, 3)
        return result

    def simulate_batched(self, settings: list, budget_bytes: float = BATCH_BYTES):
        """Simulate many settings with `moecl.algorithm.simulate_many`; yield (label, result, extra).

        ``settings``: a list of ``(label, config, extra)``. All are registered first, in
        the given order (the order of the header's labels); settings that differ only in
        `moecl.algorithm.BATCHABLE_FIELDS` run together, in batches whose per-round records
        stay within ``budget_bytes``. Results are yielded batch by batch, so only one
        batch is held at a time; each setting's wall time is its share of its batch's.
        """
        runs = [(label, self.register(label, config), extra) for label, config, extra in settings]
        groups: dict = {}
        for item in runs:
            key = tuple(sorted((k, v) for k, v in item[1].as_dict().items() if k not in BATCHABLE_FIELDS))
            groups.setdefault(key, []).append(item)
        done = 0
        for items in groups.values():
            config = items[0][1]
            per_setting = self.R * config.T * (10 * config.M + 49)  # bytes of per-round records
            size = max(1, int(budget_bytes // per_setting))
            for first in range(0, len(items), size):
                chunk = items[first:first + size]
                done += len(chunk)
                if self.progress:
                    print(f"[{done}/{len(runs)}] {len(chunk)} settings, M={config.M}, "
                          f"termination={config.termination}", file=sys.stderr, flush=True)
                results = simulate_many([c for _, c, _ in chunk], replicates=self.R, seed=self.seed,
                                        progress=self.progress)
                for (label, _, extra), result in zip(chunk, results):
                    self.wall_times[label] = round(result.wall_time / len(chunk), 3)
                    yield label, result, extra

    def add(self, key: str, value, doc: str) -> None:
        self.arrays[key] = np.asarray(value)
        self.docs[key] = doc

    def add_summary(self, key: str, values, doc: str) -> None:
        """Store `summarise` of ``values`` (R, ...) under ``key/<statistic>``."""
        for name, value in summarise(values, prefix=key).items():
            self.arrays[name] = value
        self.docs[f"{key}/{{{','.join(STATISTICS)}}}"] = doc + " (summary over replicates)"

    def add_curves(self, label: str, result: SimulationResult) -> None:
        """F_t, G_t summaries, T1 and the termination rounds of one setting."""
        self.add_summary(f"{label}/forgetting", result.forgetting, "forgetting F_t per round (NaN at t = 1)")
        self.add_summary(f"{label}/generalization", result.generalization, "generalization error G_t per round")
        self.add(f"{label}/T1", result.config.T1, "length T1 of the exploration phase")
        stops = result.termination_round
        stopped = stops[stops >= 0]
        self.add(f"{label}/termination_round", stops, "round T2 at which the gate stopped, per replicate (-1: never)")
        self.add(
            f"{label}/termination_round_median",
            float(np.median(stopped)) if stopped.size else np.nan,
            "median termination round over the replicates that terminated (NaN: none did)",
        )
        self.add(f"{label}/terminated_share", float(stopped.size / stops.size), "share of replicates whose gate terminated")

    def add_final_purity(self, label: str, result: SimulationResult) -> None:
        """Routing purity over the last window of rounds, per replicate, vs random routing."""
        window = max(1, self.T // PURITY_WINDOWS)
        purity, random = routing_purity(result, window, per_replicate=True)
        self.add_summary(f"{label}/purity_final", purity, f"routing purity over the last {window} rounds")
        self.add_summary(
            f"{label}/purity_final_random", random, f"purity of random routing over the last {window} rounds"
        )

    def add_purity_windows(self, label: str, result: SimulationResult) -> None:
        """Routing purity over successive equal windows of rounds, vs random routing.

        K = `PURITY_WINDOWS` windows of L = T // K rounds each (L = 1 and K = T when
        T < K), the last one ending at round T; the expert sets are those of each
        window's last round.
        """
        window = max(1, self.T // PURITY_WINDOWS)
        count = min(PURITY_WINDOWS, self.T // window)
        ends = self.T - window * np.arange(count - 1, -1, -1)
        purity = np.empty((self.R, ends.size))
        random = np.empty((self.R, ends.size))
        for j, end in enumerate(ends):
            purity[:, j], random[:, j] = routing_purity(result, window, end=int(end), per_replicate=True)
        self.add("purity_window_end", ends, f"last round of each purity window (windows of {window} rounds)")
        self.add_summary(f"{label}/purity", purity, "routing purity per window (share routed to the task's expert set)")
        self.add_summary(f"{label}/purity_random", random, "purity that uniformly random routing reaches per window")

    def finish(self, description: str) -> tuple[dict, dict]:
        header = make_header(
            self.name,
            self.scale,
            self.seed,
            self.R,
            time.perf_counter() - self.started,
            description=description,
            rounds=self.T,
            labels=list(self.configs),
            configs={label: config.as_dict() for label, config in self.configs.items()},
            simulation_wall_times=self.wall_times,
            overrides=self.overrides,
            arrays=self.docs,
        )
        return header, self.arrays


def _label(M: int, termination: str) -> str:
    return f"M{M}" if termination == "gap" else f"M{M}-noterm"


# --------------------------------------------------------------------------------------
# The experiments

_FORGETTING = (
    "F_t and G_t over rounds for M = 1 and M in {N/2, N, 2N, 4N} with early termination, "
    "and M = 2N without it"
)


@experiment("forgetting-vs-experts", _FORGETTING)
def forgetting_vs_experts(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Forgetting and generalization error against the number of experts (THEORY.md section 6).

    Settings: ``M1``, ``M{N/2}``, ``M{N}``, ``M{2N}``, ``M{4N}`` with the ``gap``
    termination rule and ``M{2N}-noterm`` without termination (N = 4: M1, M2, M4, M8,
    M16, M8-noterm). Arrays per label: ``forgetting/*`` and ``generalization/*`` (T,)
    summaries, ``T1``, ``termination_round`` (R,), ``termination_round_median``,
    ``terminated_share``.
    """
    run = _Run("forgetting-vs-experts", scale, seed, replicates, rounds, progress, overrides)
    base = run.base()
    N = base.N
    counts = list(dict.fromkeys([1, max(1, N // 2), N, 2 * N, 4 * N]))
    settings = [(M, "gap") for M in counts] + [(2 * N, "none")]
    run.planned = len(settings)
    for M, termination in settings:
        label = _label(M, termination)
        config = base.replace(M=M, termination=termination)
        result = run.simulate(label, config, f"M={M}, termination={termination}")
        run.add_curves(label, result)
    return run.finish(_FORGETTING)


_TERMINATION = "M = 8 with and without early termination: F_t, G_t, expert load and routing purity"


@experiment("termination", _TERMINATION)
def termination(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Early termination on and off for M = 8 (Propositions 2 and 3).

    Settings ``M8`` (gap rule) and ``M8-noterm``. Arrays per label: the curves of
    ``forgetting-vs-experts``; ``load/*`` (T, M) summaries of the load f_t^(m)
    (`SimulationResult.load`); ``purity/*`` and ``purity_random/*`` (K,) over K =
    `PURITY_WINDOWS` equal windows ending at ``purity_window_end``; ``purity_final/*``
    and ``purity_final_random/*`` over the last window.
    """
    run = _Run("termination", scale, seed, replicates, rounds, progress, overrides)
    base = run.base(M=8)
    run.planned = 2
    for termination_rule in ("gap", "none"):
        label = _label(base.M, termination_rule)
        config = base.replace(termination=termination_rule)
        result = run.simulate(label, config, f"M={config.M}, termination={termination_rule}")
        run.add_curves(label, result)
        run.add_summary(f"{label}/load", result.load(), "load f_t^(m): share of rounds 1..t routed to expert m, (T, M)")
        run.add_purity_windows(label, result)
        run.add_final_purity(label, result)
    return run.finish(_TERMINATION)


_SPECIALISATION = "M = 8 with termination: the ground truth each expert's model is closest to, over rounds"


@experiment("specialisation", _SPECIALISATION)
def specialisation(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Which ground truth each expert specialises in (Proposition 1).

    Setting ``M8`` (gap rule). Arrays: ``M8/closest_truth`` (T, M), the truth
    closest to each expert after every round in replicate 0; ``M8/covers_all`` (T,),
    the share of replicates whose experts are, between them, closest to every truth;
    ``M8/covers_all_final`` the same at t = T; ``M8/experts_per_truth/*`` (N,)
    summaries of the final number of experts closest to each truth; plus the curves of
    ``forgetting-vs-experts``.
    """
    run = _Run("specialisation", scale, seed, replicates, rounds, progress, overrides)
    config = run.base(M=8)
    run.planned = 1
    label = _label(config.M, config.termination)
    result = run.simulate(label, config, f"M={config.M}, termination={config.termination}")
    run.add_curves(label, result)
    closest = result.closest_truth  # (R, T, M)
    truths = np.arange(config.N)
    per_truth = np.sum(closest[..., None] == truths, axis=2)  # (R, T, N)
    covers = np.all(per_truth > 0, axis=-1)  # (R, T)
    run.add(f"{label}/closest_truth", closest[0], "truth closest to each expert's model after every round, replicate 0, (T, M)")
    run.add(f"{label}/covers_all", covers.mean(axis=0), "share of replicates whose experts cover every truth, per round")
    run.add(f"{label}/covers_all_final", float(covers[:, -1].mean()), "share of replicates whose experts cover every truth at t = T")
    run.add_summary(f"{label}/experts_per_truth", per_truth[:, -1], "number of experts closest to each truth at t = T, (N,)")
    return run.finish(_SPECIALISATION)


_BLIND = "outside the regime (v_norm = 1, sigma_t = 1): the gate cannot see the task, M = 1 vs M = 8"


@experiment("blind-gate", _BLIND)
def blind_gate(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """A case outside the regime of THEORY.md section 3a: no benefit from experts.

    Unit-norm feature signals and unit noise (``v_norm=1.0``, ``sigma_t=1.0``) hide
    the task from the gate. Settings ``M1`` and ``M8`` (gap rule). Arrays per label:
    the curves of ``forgetting-vs-experts`` and ``purity_final/*``,
    ``purity_final_random/*`` over the last window of rounds.
    """
    run = _Run("blind-gate", scale, seed, replicates, rounds, progress, overrides)
    base = run.base(v_norm=1.0, sigma_t=1.0)
    run.planned = 2
    for M in (1, 8):
        label = _label(M, "gap")
        config = base.replace(M=M)
        result = run.simulate(label, config, f"M={M}, v_norm=1, sigma_t=1")
        run.add_curves(label, result)
        run.add_final_purity(label, result)
    return run.finish(_BLIND)


_TOO_EARLY = (
    "sigma0 = 0.5: M = 1, and M = 4 with and without early termination; the gate stops before "
    "its values have separated"
)


@experiment("too-early", _TOO_EARLY)
def too_early(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Early termination that comes too early (THEORY.md section 3a).

    With few experts and widely spread ground truths (``M = 4``, ``sigma0 = 0.5``, so
    T1 = ceil(M / eta) = 6 rounds and the gate constants derived from sigma0 are larger),
    the gate values have not separated by T1, the termination rule clears every flag
    within a few rounds and freezes a half-formed routing: the gate that keeps training
    ends with purer routing. Settings ``M4`` (gap rule) and ``M4-noterm``; ``M1`` (one
    expert) as the reference. Arrays per label: the curves of ``forgetting-vs-experts``
    and, for ``M4`` and ``M4-noterm``, ``purity/*``, ``purity_random/*`` over K =
    `PURITY_WINDOWS` equal windows ending at ``purity_window_end`` and
    ``purity_final/*``, ``purity_final_random/*`` over the last window.
    """
    run = _Run("too-early", scale, seed, replicates, rounds, progress, overrides)
    base = run.base(M=4, sigma0=0.5)
    settings = [(1, "gap"), (4, "gap"), (4, "none")]
    run.planned = len(settings)
    for M, termination_rule in settings:
        label = _label(M, termination_rule)
        config = base.replace(M=M, termination=termination_rule)
        result = run.simulate(label, config, f"M={M}, sigma0=0.5, termination={termination_rule}")
        run.add_curves(label, result)
        if M > 1:
            run.add_purity_windows(label, result)
            run.add_final_purity(label, result)
    return run.finish(_TOO_EARLY)


# --------------------------------------------------------------------------------------
# The regime map (book/regimes.md): where the paper's story holds


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


def _regime_label(sigma_t: float, sigma0: float, M: int, termination: str) -> str:
    return f"st{sigma_t:g}-s0{sigma0:g}-" + _label(M, termination)


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
            settings.append((_regime_label(sigma_t, sigma0, 1, "gap"), cell.replace(M=1), (i, j)))
            for k, M in enumerate(counts):
                for b, rule in enumerate(REGIME_TERMINATION):
                    config = cell.replace(M=M, termination=rule)
                    settings.append((_regime_label(sigma_t, sigma0, M, rule), config, (i, j, k, b)))
    return settings


def _mean_se_into(arrays: dict, docs: dict, key: str, index, values, doc: str) -> None:
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


@experiment("regime-map", _REGIME_MAP)
def regime_map(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """The regime map of book/regimes.md (THEORY.md section 3a), per-cell summaries only.

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
    R, T = _own_scale(REGIME_GRIDS, scale, replicates, rounds)
    grid = REGIME_GRIDS[scale]
    run = _Run("regime-map", scale, seed, R, T, progress, overrides)
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
            _mean_se_into(arrays, docs, "single/generalization", at, G1, "final G_T of one expert, (S, Z)")
            _mean_se_into(arrays, docs, "single/forgetting", at, F1, "final F_T of one expert, (S, Z)")
            continue
        G1, F1 = singles[at[:2]]
        arrays["moe/T1"][at[1], at[2]] = config.T1
        G, F = result.generalization[:, -1], result.forgetting[:, -1]
        _mean_se_into(arrays, docs, "moe/generalization", at, G, "final G_T of the MoE, (S, Z, K, 2)")
        _mean_se_into(arrays, docs, "moe/forgetting", at, F, "final F_T of the MoE, (S, Z, K, 2)")
        _mean_se_into(arrays, docs, "moe/generalization_gap", at, G - G1,
                      "paired G_T(MoE) - G_T(M = 1) on the same replicate, (S, Z, K, 2)")
        _mean_se_into(arrays, docs, "moe/forgetting_gap", at, F - F1,
                      "paired F_T(MoE) - F_T(M = 1) on the same replicate, (S, Z, K, 2)")
        purity, random = routing_purity(result, window, per_replicate=True)
        _mean_se_into(arrays, docs, "moe/purity", at, purity,
                      f"routing purity over the last {window} rounds, sets of round T, (S, Z, K, 2)")
        _mean_se_into(arrays, docs, "moe/purity_random", at, random,
                      f"purity of uniformly random routing over the same {window} rounds, (S, Z, K, 2)")
        excess = (purity - random) / np.where(random < 1, 1 - random, np.nan)
        _mean_se_into(arrays, docs, "moe/purity_excess", at, excess,
                      "excess purity (purity - random) / (1 - random) per replicate: 0 for routing "
                      "blind to the task, 1 for routing always into the task's set, (S, Z, K, 2)")
        stops = result.termination_round
        stopped = stops[stops >= 0]
        terminated[at] = stopped.size / stops.size
        if stopped.size:
            T2_median[at] = np.median(stopped)
        _mean_se_into(arrays, docs, "moe/T2_minus_T1", at, np.where(stops >= 0, stops - config.T1, np.nan),
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
      before the expert sets had formed, THEORY.md section 3a);
    * 1, specialisation kept only with termination: otherwise, if ``z_diff >= z`` and
      ``e_on >= threshold`` (Proposition 2: without termination the load-balancing
      loss undoes the routing);
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


# --------------------------------------------------------------------------------------
# Drift and re-opening (issue 9, section 5; book/drift.md)

#: Size presets of ``drift`` (its own, like the regime map's): ``ci`` runs in seconds, ``paper`` in
#: minutes with T = 10,000 rounds.
DRIFT_SCALES = {"ci": Scale(replicates=60, rounds=3000), "paper": Scale(replicates=400, rounds=10_000)}

#: Book choice: the setting of ``drift``. sigma_t = 0.03 makes the gate input purer than the
#: package default (gate SNR 15 instead of 4.5), so routing is clean before the drift and a
#: frozen gate's handling of the new truths shows; 2 of the N = 4 truths are replaced at
#: T_d = T / 5.
DRIFT_SETTING = {"M": 8, "sigma_t": 0.03, "drift_count": 2}
#: The settings of ``drift``: label -> the re-opening fields of `Config` (book choices for the
#: thresholds: the windowed rule fires when the mean change over 80 rounds of the frozen gate exceeds
#: 0.15 = 1.5 sigma0; the strike rule when 3 changes in a row exceed 0.3); ``told`` re-opens at T_d + 1, a
#: reference that knows the drift round (`moecl.gate.ReopenAtDrift`).
DRIFT_RULES = {
    "frozen": {"reopen": "never"},
    "window": {"reopen": "window", "reopen_threshold": 0.15, "reopen_patience": 80},
    "strikes": {"reopen": "locality", "reopen_threshold": 0.3, "reopen_patience": 3},
    "told": {"reopen": "at-drift"},
}
#: Number of equal windows over which ``drift`` measures routing purity.
DRIFT_WINDOWS = 50


def drift_round(T: int) -> int:
    """The drift round T_d = T / 5 of the ``drift`` experiment (at least 1)."""
    return max(1, T // 5)


def task_purity(result: SimulationResult, truths) -> np.ndarray:
    """Per round, whether a task of one of ``truths`` went to an expert closest to its own truth.

    (R, T) floats: 1 or 0 where ``n_t`` is in ``truths``, NaN elsewhere. The routed expert's
    closest truth is read after the round (``closest_truth[r, t, m_t] == n_t``).
    """
    routed = np.take_along_axis(result.closest_truth, result.experts[..., None], axis=2)[..., 0]
    pure = (routed == result.tasks).astype(float)
    pure[~np.isin(result.tasks, np.asarray(truths))] = np.nan
    return pure


def windowed_mean(values: np.ndarray, windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of (R, T) ``values`` over ``windows`` equal windows of rounds, ignoring NaN.

    Returns (ends (K,), means (R, K)); windows of ``T // windows`` rounds (at least 1) end at
    round T; a window without a finite value is NaN.
    """
    R, T = values.shape
    length = max(1, T // windows)
    count = T // length
    ends = T - length * np.arange(count - 1, -1, -1)
    blocks = values[:, T - count * length:].reshape(R, count, length)
    finite = np.isfinite(blocks)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(finite, blocks, 0.0).sum(axis=2) / finite.sum(axis=2)
    return ends, means


_DRIFT = (
    "drift: 2 of 4 truths replaced at T_d = T/5 (M = 8, sigma_t = 0.03); a frozen gate, the windowed "
    "re-opening rule, the strike rule and re-opening told T_d: G over post-drift tasks, routing purity of new and old truths, "
    "gate training"
)


@experiment("drift", _DRIFT)
def drift(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """A pool that changes at round T_d, met by a frozen gate and by re-opening rules (issue 9, section 5).

    Settings (`DRIFT_RULES`, on `DRIFT_SETTING` with ``drift_round`` = `drift_round` (T)):
    ``frozen`` (the paper: a terminated gate stays frozen), ``window`` (`moecl.gate.WindowReopening`),
    ``strikes`` (`moecl.gate.LocalityReopening`) and ``told`` (`moecl.gate.ReopenAtDrift`: re-opens
    once at T_d + 1, a reference that knows the drift round). Own presets `DRIFT_SCALES`.
    Arrays per label (summaries ``/*`` over replicates as in `moecl.results.summarise`):

    * ``generalization/*`` (T,): G_t over all tasks; ``T1``; ``termination_round`` (R,): first
      stop of the gate (-1: never);
    * ``drift_generalization/*`` (T,): G_t over the tasks after T_d (NaN up to T_d);
    * ``purity_new/*``, ``purity_old/*`` (K,): share of the tasks of the new truths, resp. of the
      surviving old ones, routed to an expert whose model is closest to their truth, over K =
      `DRIFT_WINDOWS` windows ending at ``purity_window_end`` (NaN where a window has none);
      ``purity_before_drift`` (R,): per replicate, the same for all tasks of rounds T_d/2 + 1..T_d;
    * ``gate_trained/*`` (T,): share of replicates whose gate trains in round t;
    * ``drift_gain/*`` (scalars, not for ``frozen``): the paired difference of the final
      post-drift G_T, frozen minus this rule (positive: the rule recovers);
    * ``reopenings`` (R,), ``reopenings_before_drift`` (R,): how often each replicate's gate
      re-opened, in all and up to T_d (before the pool changed).

    Scalars ``drift_round`` and ``window`` (rounds per purity window).
    """
    R, T = _own_scale(DRIFT_SCALES, scale, replicates, rounds)
    run = _Run("drift", scale, seed, R, T, progress, overrides)
    T_d = drift_round(run.T)
    base = run.base(drift_round=T_d, **DRIFT_SETTING)
    run.add("drift_round", T_d, "round T_d after which the new truths replace the first drift_count")
    run.planned = len(DRIFT_RULES)
    new = np.arange(base.N, base.pool_size)
    kept = np.arange(base.drift_count, base.N)
    frozen_final = None
    for label, fields in DRIFT_RULES.items():
        config = base.replace(**fields)
        result = run.simulate(label, config, f"drift at {T_d}, reopen={config.reopen}")
        run.add_summary(f"{label}/generalization", result.generalization, "generalization error G_t per round")
        run.add(f"{label}/T1", config.T1, "length T1 of the exploration phase")
        run.add(f"{label}/termination_round", result.termination_round,
                "round T2 at which the gate first stopped, per replicate (-1: never)")
        final = result.drift_generalization[:, -1]
        if frozen_final is None:
            frozen_final = final
        else:
            run.add_summary(f"{label}/drift_gain", frozen_final - final,
                            "paired gain over the frozen gate: its G_T over post-drift tasks minus this rule's, "
                            "same replicate (positive: the rule recovers)")
        run.add_summary(f"{label}/drift_generalization", result.drift_generalization,
                        "G_t over the tasks that arrived after T_d (NaN up to T_d)")
        ends, new_purity = windowed_mean(task_purity(result, new), DRIFT_WINDOWS)
        _, old_purity = windowed_mean(task_purity(result, kept), DRIFT_WINDOWS)
        run.add("purity_window_end", ends, "last round of each purity window")
        run.add("window", int(ends[1] - ends[0]) if ends.size > 1 else int(ends[0]), "rounds per purity window")
        run.add_summary(f"{label}/purity_new", new_purity,
                        "share of the new truths' tasks routed to an expert closest to their truth, per window")
        run.add_summary(f"{label}/purity_old", old_purity,
                        "the same for the tasks of the old truths that survive the drift, per window")
        before = task_purity(result, np.arange(base.N))[:, T_d // 2 : T_d]
        run.add(f"{label}/purity_before_drift", np.nanmean(before, axis=1) if before.shape[1] else np.full(run.R, np.nan),
                "per replicate: share of tasks routed to an expert closest to their truth in rounds T_d/2 + 1..T_d")
        run.add_summary(f"{label}/gate_trained", result.gate_trained.astype(float),
                        "share of replicates whose gate trains (Eq. (9)) in round t")
        starts = np.diff(result.gate_trained.astype(np.int64), axis=1) == 1  # frozen in t, training in t + 1
        run.add(f"{label}/reopenings", starts.sum(axis=1), "re-openings per replicate")
        run.add(f"{label}/reopenings_before_drift", starts[:, : T_d - 1].sum(axis=1),
                "re-openings per replicate up to round T_d (false alarms: the pool had not changed)")
    return run.finish(_DRIFT)


# --------------------------------------------------------------------------------------
# Deep networks (moecl.deep): the methods of the comparison chapter (book/seed.md)

#: Methods of ``deep-methods``: label -> (DeepConfig.method, M).
DEEP_METHODS = {
    "finetune": ("finetune", 1),
    "joint": ("joint", 1),
    "gate-M2": ("gate", 2),
    "gate-M4": ("gate", 4),
    "gate-M8": ("gate", 8),
    "seed-M2": ("seed", 2),
    "seed-M4": ("seed", 4),
    "seed-M8": ("seed", 8),
}
#: Size presets of ``deep-methods``: seeds (the replicates) and rounds, two, resp. four, cycles
#: through the five tasks (a stream of N tasks gets ``rounds // 5 * N`` rounds unless given).
DEEP_SCALES = {"ci": Scale(replicates=2, rounds=10), "paper": Scale(replicates=5, rounds=20)}
_DEEP_KEYS = ("average_accuracy", "accuracy_forgetting", "backward_transfer", "forgetting", "generalization")
#: Task streams of ``deep-methods`` (``--set stream=NAME``), class-incremental labels.
#: digits: {0,1}, {2,3}, ..., {8,9} of `moecl.data.load_digits` (MNIST, else scikit-learn's digits);
#: cifar10: the five two-class tasks of `moecl.data.cifar10_tasks`; tiny-imagenet: the first
#: ``classes`` classes of ``wnids.txt`` (``--set classes=K``, a multiple of 4; default 20, the
#: data directory's subset) in four-class tasks (`moecl.data.tiny_imagenet_tasks`); K = 200 is
#: the full-size stream of 50 tasks.
DEEP_STREAMS = ("digits", "cifar10", "tiny-imagenet")
#: Per stream: test images per task, and the `moecl.deep.DeepConfig` fields that differ from digits
#: (colour images: fewer samples and epochs per round at the CI scale, so that a CPU runs it).
_DEEP_STREAM_SETTINGS = {
    "digits": (60, {}),
    "cifar10": (80, {"ci": {"samples_per_round": 60, "epochs": 4}}),
    "tiny-imagenet": (80, {"ci": {"samples_per_round": 60, "epochs": 4}}),
}
#: `moecl.deep.DeepConfig` fields that ``--set`` may change (the experiment sets method, M and T).
_DEEP_SETTABLE = ("device", "architecture", "width", "epochs", "samples_per_round", "batch_size", "lr",
                  "termination", "test_samples")


_TINY_IMAGENET_CLASSES = 20
_TINY_IMAGENET_CLASSES_PER_TASK = 4


def _deep_stream(name: str, seed: int, classes: int = _TINY_IMAGENET_CLASSES):
    """The class-incremental stream ``name`` of `DEEP_STREAMS` (see there)."""
    from . import data

    test_samples = _DEEP_STREAM_SETTINGS[name][0]
    if name == "digits":
        return data.class_split_tasks(data.load_digits(), [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]],
                                      scenario="class", test_samples_per_task=test_samples, seed=seed)
    if name == "cifar10":
        return data.cifar10_tasks(scenario="class", test_samples_per_task=test_samples, seed=seed)
    return data.tiny_imagenet_tasks(num_classes=classes, classes_per_task=_TINY_IMAGENET_CLASSES_PER_TASK,
                                    scenario="class", test_samples_per_task=test_samples, seed=seed)


@experiment(
    "deep-methods",
    "split digits, CIFAR-10 or Tiny ImageNet (cyclic tasks; --set stream=...): the paper's MoE gate "
    "and SEED (M = 2, 4, 8), fine-tuning and joint training; task- and class-incremental accuracy metrics per seed",
)
def deep_methods(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """The deep comparison of book/seed.md from the command line (issue 10).

    Stream (``overrides={"stream": NAME}``, on the command line ``--set stream=NAME``;
    default ``digits``), one of `DEEP_STREAMS`: tasks with class-incremental labels, in
    cyclic order; the header's ``stream`` and ``source`` say which data it ran on.
    ``classes`` (tiny-imagenet only) sets the number of Tiny ImageNet classes; without
    ``rounds``, a stream of N tasks runs the preset's cycles, ``rounds // 5 * N``
    rounds. Other overrides change the `moecl.deep.DeepConfig` fields of
    `_DEEP_SETTABLE` in every method, e.g. ``--set device=cuda`` for a GPU run (the
    default is ``cpu``, deterministic); method, M and T are the experiment's own.
    Replicate k is seed ``seed + k`` of one batched ``deep.run(..., seed=[seed, seed + 1, ...])``
    (equal to a run of that seed alone up to float32 rounding). Arrays, per method label and
    scenario (``task``, ``class``): ``<label>/<scenario>/<metric>`` (R,) for the metrics
    of `moecl.deep.summarise`, and ``<label>/<scenario>/accuracy_matrix`` (R, T, T).
    """
    from . import deep

    if scale not in DEEP_SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(DEEP_SCALES)}")
    overrides = dict(overrides or {})
    stream_name = overrides.pop("stream", "digits")
    if stream_name not in DEEP_STREAMS:
        raise ValueError(f"stream={stream_name!r} is not one of {', '.join(DEEP_STREAMS)}")
    if "classes" in overrides and stream_name != "tiny-imagenet":
        raise ValueError(f"classes={overrides['classes']!r} applies to stream='tiny-imagenet' only, "
                         f"not to stream={stream_name!r}")
    classes = overrides.pop("classes", _TINY_IMAGENET_CLASSES)
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 8 or (
            classes % _TINY_IMAGENET_CLASSES_PER_TASK):
        raise ValueError(f"classes={classes!r} must be a multiple of {_TINY_IMAGENET_CLASSES_PER_TASK} "
                         "of at least 8 (Tiny ImageNet classes, in four-class tasks)")
    for field_name in overrides:
        if field_name not in _DEEP_SETTABLE:
            raise ValueError(
                f"--set {field_name}: deep-methods runs moecl.deep and takes none of the moecl.Config fields; "
                f"it takes stream, classes and the DeepConfig fields {', '.join(_DEEP_SETTABLE)}")
    seed = _check_seed(seed)
    preset = DEEP_SCALES[scale]
    R, T = resolve_scale("ci", preset.replicates if replicates is None else replicates,
                         preset.rounds if rounds is None else rounds)
    started = time.perf_counter()
    fields = dict(T=T, task_order="cyclic", samples_per_round=100, epochs=5, batch_size=20,
                  lr=5e-3, width=8, test_samples=None, device="cpu")
    fields.update(_DEEP_STREAM_SETTINGS[stream_name][1].get(scale, {}))
    fields.update(overrides)
    base = deep.DeepConfig(**fields)  # checks the overrides before any data is read
    try:
        stream = _deep_stream(stream_name, seed, classes)
    except FileNotFoundError as error:  # a stream whose data is absent is a value this run cannot take
        raise ValueError(f"stream={stream_name!r} needs data that is not in the data directory ({error}); "
                         f"set MOECL_DATA to a folder that has it (data_scripts/download.py)") from error
    if rounds is None and stream.N != 5:  # the preset's cycles through a stream of N tasks
        T = preset.rounds // 5 * stream.N
        base = base.replace(T=T)
    arrays, docs, configs, wall_times = {}, {}, {}, {}
    for index, (label, (method, M)) in enumerate(DEEP_METHODS.items()):
        config = base.replace(method=method, M=M)
        configs[label] = dataclasses.asdict(config)
        if progress:
            print(f"[{index + 1}/{len(DEEP_METHODS)}] {label}: method={method}, M={M}", file=sys.stderr, flush=True)
        clock = time.perf_counter()
        # the R seeds train in lockstep, their selected experts batched (moecl.deep.run_replicates)
        records = deep.run(config, stream, seed=[seed + k for k in range(R)], progress=progress)
        wall_times[label] = round(time.perf_counter() - clock, 3)
        for scenario in deep.SCENARIOS:
            summaries = [deep.summarise(r, scenario=scenario) for r in records]
            for key in _DEEP_KEYS:
                arrays[f"{label}/{scenario}/{key}"] = np.array([s[key] for s in summaries])
            arrays[f"{label}/{scenario}/accuracy_matrix"] = np.stack(
                [deep.accuracy_matrix(r, scenario) for r in records])
    docs["<label>/<scenario>/<metric>"] = f"per seed, (R,): {', '.join(_DEEP_KEYS)} (moecl.deep.summarise)"
    docs["<label>/<scenario>/accuracy_matrix"] = "per seed, (R, T, T): accuracy on task i after round t (NaN: unseen)"
    header = make_header(
        "deep-methods", scale, seed, R, time.perf_counter() - started,
        description=EXPERIMENTS["deep-methods"].description,
        rounds=T, labels=list(DEEP_METHODS), configs=configs, stream=stream_name, source=stream.source,
        seeds=[seed + k for k in range(R)], simulation_wall_times=wall_times, arrays=docs,
    )
    return header, arrays
