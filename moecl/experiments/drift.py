"""Drift of the ground truths and re-opening the gate (book chapter: drift)."""

from __future__ import annotations

import numpy as np

from ..records import SimulationResult
from .recorder import Recorder
from .registry import Scale, experiment, own_scale


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
#: reference that knows the drift round (`moecl.gate.AtDriftReopening`).
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


@experiment("drift", _DRIFT, presets=DRIFT_SCALES, owns={
    **{field: "the drift setting fixes it" for field in ("M", "sigma_t", "drift_count", "drift_round")},
    **{field: "the settings compare re-opening rules" for field in ("reopen", "reopen_threshold",
                                                                   "reopen_patience")}})
def drift(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """A pool that changes at round T_d, met by a frozen gate and by re-opening rules (book chapter: drift).

    Settings (`DRIFT_RULES`, on `DRIFT_SETTING` with ``drift_round`` = `drift_round` (T)):
    ``frozen`` (the paper: a terminated gate stays frozen), ``window`` (`moecl.gate.WindowReopening`),
    ``strikes`` (`moecl.gate.LocalityReopening`) and ``told`` (`moecl.gate.AtDriftReopening`: re-opens
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
    R, T = own_scale(DRIFT_SCALES, scale, replicates, rounds)
    run = Recorder("drift", scale, seed, R, T, progress, overrides)
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
