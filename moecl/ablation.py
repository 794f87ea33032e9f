"""The ablation of the gate's training losses (book/ablation.md): which term of Eq. (8) does what.

`GATE_LOSSES` names the four gate losses compared: the paper's (locality Eq. (6) plus
load balancing Eq. (7)), either term alone (``alpha = 0``, or ``locality_loss="none"``),
and neither (the gate never moves from 0). `pooled_measures` runs one setting over
several pools (one seed each) and returns per-pool means of the measures the book uses
for Proposition 2; `gate_forces` recovers, round by round, the size of each term's
gradient from a run's records.
"""

from __future__ import annotations

import numpy as np

from . import gate
from .simulation import simulate
from .metrics import routing_purity

#: Gate losses of the ablation, as `Config` changes.
GATE_LOSSES = {
    "paper": {},
    "no load balancing": {"alpha": 0.0},
    "no locality": {"locality_loss": "none"},
    "neither": {"alpha": 0.0, "locality_loss": "none"},
}

#: The measures of `pooled_measures`, in order.
MEASURES = ("excess purity", "forgetting", "generalization", "load cv", "gate range", "gate range at T1", "terminated")


def excess_purity(result, window: int) -> np.ndarray:
    """Routing purity of the last ``window`` rounds rescaled so that random routing scores 0
    and routing always into the task's own set scores 1 (R,)."""
    purity, random = routing_purity(result, window=window, per_replicate=True)
    return (purity - random) / (1 - random)


def load_cv(result, t: int | None = None) -> np.ndarray:
    """Coefficient of variation over experts of the load ``f_t^(m)`` at round t (default T), (R,)."""
    t = result.config.T if t is None else t
    f = result.load()[:, t - 1]
    return f.std(axis=-1) / f.mean(axis=-1)


def measures(result, window: int) -> dict:
    """Per-replicate measures of one run (each (R,)): see `MEASURES`. ``gate range`` is
    the mean of ``max_m h_m - min_m h_m`` over the last ``window`` rounds, ``gate range at
    T1`` its mean over the last 10 rounds of exploration, ``T1 - 9 .. T1``."""
    h = result.gate_values
    spread = h.max(axis=-1) - h.min(axis=-1)
    T1 = result.config.T1
    return {
        "excess purity": excess_purity(result, window),
        "forgetting": result.forgetting[:, -1],
        "generalization": result.generalization[:, -1],
        "load cv": load_cv(result),
        "gate range": spread[:, -window:].mean(axis=1),
        "gate range at T1": spread[:, max(T1 - 10, 0):T1].mean(axis=1) if T1 >= 1 else np.full(len(h), np.nan),
        "terminated": (result.termination_round >= 0).astype(float),
    }


def pooled_measures(config, seeds, replicates: int, window: int) -> dict:
    """Run ``config`` once per seed (each seed draws its own pool) and return, per measure,
    the per-pool means (P,) over ``replicates`` replicates."""
    table = {name: [] for name in MEASURES}
    for seed in seeds:
        for name, values in measures(simulate(config, replicates=replicates, seed=seed), window).items():
            table[name].append(float(np.mean(values)))
    return {name: np.array(values) for name, values in table.items()}


def gate_forces(result) -> tuple[np.ndarray, np.ndarray]:
    """Norms ``||c^loc||`` and ``||c^aux||`` (R, T) of the two terms' gradient coefficients in
    every round (`moecl.gate.locality_grad`, `moecl.gate.load_balance_grad`), from the
    recorded gate values, routing, change norms and loads; 0 where the gate did not train.

    Both gradients are ``c_m xbar_t``, so the ratio of the norms is the ratio of the sizes
    of the two terms' steps in that round."""
    config = result.config
    if config.balance_loss != "load_balance":
        raise ValueError(f"balance_loss={config.balance_loss!r}: gate_forces knows Eq. (7) only")
    pi = gate.softmax(result.gate_values)
    local = gate.LOCALITY_LOSSES[config.locality_loss](pi, result.experts, result.change_norm)
    t = result.rounds[None, :, None]
    frequency = result.load()
    mean_frequency = np.sum(frequency * pi, axis=-1, keepdims=True)
    balance = config.alpha * config.M / t * pi * (frequency - mean_frequency)
    trained = result.gate_trained
    return np.linalg.norm(local, axis=-1) * trained, np.linalg.norm(balance, axis=-1) * trained
