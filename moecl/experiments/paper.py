"""The five experiments of the paper's synthetic study (book chapter: synthetic experiments)."""

from __future__ import annotations

import numpy as np

from .recorder import Recorder
from .registry import experiment


def setting_label(M: int, termination: str) -> str:
    return f"M{M}" if termination == "gap" else f"M{M}-noterm"


_FORGETTING = (
    "F_t and G_t over rounds for M = 1 and M in {N/2, N, 2N, 4N} with early termination, "
    "and M = 2N without it"
)


@experiment("forgetting-vs-experts", _FORGETTING, owns={
    "M": "it sweeps M over 1, N/2, N, 2N, 4N", "termination": "it compares the gap rule with none"})
def forgetting_vs_experts(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Forgetting and generalization error against the number of experts (book chapter: synthetic experiments).

    Settings: ``M1``, ``M{N/2}``, ``M{N}``, ``M{2N}``, ``M{4N}`` with the ``gap``
    termination rule and ``M{2N}-noterm`` without termination (N = 4: M1, M2, M4, M8,
    M16, M8-noterm). Arrays per label: ``forgetting/*`` and ``generalization/*`` (T,)
    summaries, ``T1``, ``termination_round`` (R,), ``termination_round_median``,
    ``terminated_share``.
    """
    run = Recorder("forgetting-vs-experts", scale, seed, replicates, rounds, progress, overrides)
    base = run.base()
    N = base.N
    counts = list(dict.fromkeys([1, max(1, N // 2), N, 2 * N, 4 * N]))
    settings = [(M, "gap") for M in counts] + [(2 * N, "none")]
    run.planned = len(settings)
    for M, termination in settings:
        label = setting_label(M, termination)
        config = base.replace(M=M, termination=termination)
        result = run.simulate(label, config, f"M={M}, termination={termination}")
        run.add_curves(label, result)
    return run.finish(_FORGETTING)


_TERMINATION = "M = 8 with and without early termination: F_t, G_t, expert load and routing purity"


@experiment("termination", _TERMINATION, owns={
    "M": "M = 8 in both settings", "termination": "it compares the gap rule with none"})
def termination(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Early termination on and off for M = 8 (Propositions 2 and 3).

    Settings ``M8`` (gap rule) and ``M8-noterm``. Arrays per label: the curves of
    ``forgetting-vs-experts``; ``load/*`` (T, M) summaries of the load f_t^(m)
    (`SimulationResult.load`); ``purity/*`` and ``purity_random/*`` (K,) over K =
    `PURITY_WINDOWS` equal windows ending at ``purity_window_end``; ``purity_final/*``
    and ``purity_final_random/*`` over the last window.
    """
    run = Recorder("termination", scale, seed, replicates, rounds, progress, overrides)
    base = run.base(M=8)
    run.planned = 2
    for termination_rule in ("gap", "none"):
        label = setting_label(base.M, termination_rule)
        config = base.replace(termination=termination_rule)
        result = run.simulate(label, config, f"M={config.M}, termination={termination_rule}")
        run.add_curves(label, result)
        run.add_summary(f"{label}/load", result.load(), "load f_t^(m): share of rounds 1..t routed to expert m, (T, M)")
        run.add_purity_windows(label, result)
        run.add_final_purity(label, result)
    return run.finish(_TERMINATION)


_SPECIALISATION = "M = 8 with termination: the ground truth each expert's model is closest to, over rounds"


@experiment("specialisation", _SPECIALISATION, owns={
    "M": "M = 8", "termination": "the gap rule, its label M8"})
def specialisation(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Which ground truth each expert specialises in (Proposition 1).

    Setting ``M8`` (gap rule). Arrays: ``M8/closest_truth`` (T, M), the truth
    closest to each expert after every round in replicate 0; ``M8/covers_all`` (T,),
    the share of replicates whose experts are, between them, closest to every truth;
    ``M8/covers_all_final`` the same at t = T; ``M8/experts_per_truth/*`` (N,)
    summaries of the final number of experts closest to each truth; plus the curves of
    ``forgetting-vs-experts``.
    """
    run = Recorder("specialisation", scale, seed, replicates, rounds, progress, overrides)
    config = run.base(M=8)
    run.planned = 1
    label = setting_label(config.M, config.termination)
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


@experiment("blind-gate", _BLIND, owns={
    "M": "it compares M = 1 with M = 8", "v_norm": "v_norm = 1 hides the task",
    "sigma_t": "sigma_t = 1 hides the task"})
def blind_gate(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """A case outside the regime where expert sets form (book chapter: regimes): no benefit from experts.

    Unit-norm feature signals and unit noise (``v_norm=1.0``, ``sigma_t=1.0``) hide
    the task from the gate. Settings ``M1`` and ``M8`` (gap rule). Arrays per label:
    the curves of ``forgetting-vs-experts`` and ``purity_final/*``,
    ``purity_final_random/*`` over the last window of rounds.
    """
    run = Recorder("blind-gate", scale, seed, replicates, rounds, progress, overrides)
    base = run.base(v_norm=1.0, sigma_t=1.0)
    run.planned = 2
    for M in (1, 8):
        label = setting_label(M, "gap")
        config = base.replace(M=M)
        result = run.simulate(label, config, f"M={M}, v_norm=1, sigma_t=1")
        run.add_curves(label, result)
        run.add_final_purity(label, result)
    return run.finish(_BLIND)


_TOO_EARLY = (
    "sigma0 = 0.5: M = 1, and M = 4 with and without early termination; the gate stops before "
    "its values have separated"
)


@experiment("too-early", _TOO_EARLY, owns={
    "M": "it compares M = 1 with M = 4", "sigma0": "sigma0 = 0.5 makes termination come too early",
    "termination": "it compares the gap rule with none"})
def too_early(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """Early termination that comes too early (book chapter: regimes).

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
    run = Recorder("too-early", scale, seed, replicates, rounds, progress, overrides)
    base = run.base(M=4, sigma0=0.5)
    settings = [(1, "gap"), (4, "gap"), (4, "none")]
    run.planned = len(settings)
    for M, termination_rule in settings:
        label = setting_label(M, termination_rule)
        config = base.replace(M=M, termination=termination_rule)
        result = run.simulate(label, config, f"M={M}, sigma0=0.5, termination={termination_rule}")
        run.add_curves(label, result)
        if M > 1:
            run.add_purity_windows(label, result)
            run.add_final_purity(label, result)
    return run.finish(_TOO_EARLY)
