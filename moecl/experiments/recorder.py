"""`Recorder`: collects the simulated settings of one experiment into a results header and arrays."""

from __future__ import annotations

import sys
import time

import numpy as np

from .. import limits, sweep
from ..records import SimulationResult
from ..simulation import simulate, simulate_many
from ..config import Config
from ..dynamics import purity_windows
from ..metrics import routing_purity
from ..results import STATISTICS, make_header, summarise
from .._checks import check_seed
from .registry import resolve_scale


#: Number of equal windows over which routing purity is measured along the rounds.
PURITY_WINDOWS = 10


#: Memory budget of one batch of `Recorder.simulate_batched` (per-round records), bytes: the sweep's
#: (`moecl.sweep.PIECE_BYTES`; the batches are cut by `moecl.sweep.batches`).
BATCH_BYTES = sweep.PIECE_BYTES


class Recorder:
    """Collects the simulated settings of one experiment into a header and arrays."""

    def __init__(self, name: str, scale: str, seed: int, replicates, rounds, progress: bool, overrides=None):
        self.name = name
        self.overrides = dict(overrides or {})
        unknown = sorted(set(self.overrides) - set(Config.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not a field of moecl.Config")
        self.scale = scale
        self.seed = check_seed(seed)
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
        limits.check_memory(config, self.R)
        (result,) = self._guarded([config], lambda: [simulate(config, replicates=self.R, seed=self.seed,
                                                             progress=self.progress)])
        self.wall_times[label] = round(result.wall_time, 3)
        return result

    @staticmethod
    def _guarded(configs: list, run) -> list:
        """``run()``, with a singular task matrix and non-finite curves refused in one line naming the scales."""
        try:
            results = run()
        except np.linalg.LinAlgError as error:
            raise limits.singular_error(configs) from error
        limits.check_finite(configs, results)
        return results

    def simulate_batched(self, settings: list, budget_bytes: float = BATCH_BYTES):
        """Simulate many settings with `moecl.simulate_many`; yield (label, result, extra).

        ``settings``: a list of ``(label, config, extra)``. All are registered first, in
        the given order (the order of the header's labels); settings that differ only in
        `moecl.records.BATCHABLE_FIELDS` run together, in batches whose records stay within
        ``budget_bytes`` (`moecl.sweep.batches`, the grouping the sweep's pieces use). Results
        are yielded batch by batch, so only one batch is held at a time; each setting's wall
        time is its share of its batch's.
        """
        runs = [(label, self.register(label, config), extra) for label, config, extra in settings]
        done = 0
        for positions in sweep.batches([config for _, config, _ in runs], self.R, budget_bytes):
            chunk = [runs[p] for p in positions]
            config = chunk[0][1]
            done += len(chunk)
            if self.progress:
                print(f"[{done}/{len(runs)}] {len(chunk)} settings, M={config.M}, "
                      f"termination={config.termination}", file=sys.stderr, flush=True)
            configs = [c for _, c, _ in chunk]
            limits.check_memory(config, self.R, configs=len(configs))
            results = self._guarded(configs, lambda: simulate_many(configs, replicates=self.R, seed=self.seed,
                                                                   progress=self.progress))
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
        ends, purity, random = purity_windows(result, window, align="end", count=PURITY_WINDOWS)
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
