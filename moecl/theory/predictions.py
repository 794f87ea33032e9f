"""The theory's dependences tested as predictions (book chapter: where the theory's predictions hold).

Theorems 1-2 and Propositions 1-3 of Li et al. (ICLR 2025) state how forgetting,
generalization error and the termination round T2 depend on T1, M, N, sigma0 and
the model gaps. This module holds the statistics the chapter uses to hold those
dependences against Algorithm 1 (`moecl.simulate`) run on a grid of one parameter:

* `step_verdict`: along a grid, does Algorithm 1 move in the closed form's direction
  at every step? A paired z-test per step with its power against the closed form's
  own step, and a verdict "holds" / "holds in a regime" / "does not hold".
* `log_slope`: the log-log slope of a quantity over a grid (T2 against M or sigma0)
  with its standard error, for an equivalence test against the predicted exponent.
* `coverage_probability`: the chance that M experts, each specialising in a truth
  drawn uniformly at random, cover all N truths (the coupon-collector count behind
  the condition M = Omega(N ln N) of Proposition 1).
* `gap_explained`: the share of the closed-form-vs-Algorithm-1 gap that a phase model
  with another routing closes.
* `mixed_routing`: a routing matrix from parameters alone: a share ``purity`` of each
  truth's tasks goes uniformly to its expert set of `default_routing`, the rest
  uniformly to the other experts (the chapter's attempt to predict Algorithm 1's routing).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from .._checks import check_int
from .phase_model import default_routing

#: z a step of Algorithm 1 must reach to count as a move (one-sided, per step).
STEP_Z = 3.0
#: Power (against the closed form's own step) from which a step that does not move counts
#: as a departure; below it the step is "untested".
STEP_POWER = 0.9
VERDICTS = ("holds", "holds in a regime", "does not hold", "not tested")


def step_power(predicted_step: float, se: float, z: float = STEP_Z) -> float:
    """Power of the one-sided z-test at ``z`` to detect a true step of size ``|predicted_step|`` with error ``se``."""
    if not se > 0:
        raise ValueError(f"se={se!r} must be positive")
    return float(stats.norm.cdf(abs(predicted_step) / se - z))


def step_verdict(closed, measured, z: float = STEP_Z, power: float = STEP_POWER) -> dict:
    """Along a grid, does Algorithm 1 follow the closed form's direction at every step?

    closed (K,): the closed form at the K grid points. measured (K, R): Algorithm 1's
    per-replicate values, replicates paired across the grid (common random numbers:
    one seed for every grid point). Step j compares point j + 1 with point j: the paired
    mean difference, its standard error, ``z`` signed so that > 0 is the closed form's
    direction, and the power to detect the closed form's own step at ``z``. A step
    *agrees* (z > `STEP_Z`), *opposes* (z < -`STEP_Z`), is *flat* (neither, with power
    at least ``power``) or *untested* (neither, with less power).

    Verdict: "holds" when every step agrees; "does not hold" when none agrees and at
    least one opposes or is flat; "not tested" when none agrees and every step is
    untested; otherwise "holds in a regime" (the steps that agree say where).
    """
    closed = np.asarray(closed, dtype=float)
    measured = np.asarray(measured, dtype=float)
    if closed.ndim != 1 or measured.ndim != 2 or measured.shape[0] != closed.size or closed.size < 2:
        raise ValueError(f"closed {closed.shape} and measured {measured.shape} must be (K,) and (K, R), K >= 2")
    steps = []
    for j in range(closed.size - 1):
        predicted = closed[j + 1] - closed[j]
        diff = measured[j + 1] - measured[j]
        diff = diff[np.isfinite(diff)]
        mean, se = float(diff.mean()), float(diff.std(ddof=1) / math.sqrt(diff.size))
        if not se > 0:
            raise ValueError(f"step {j}: the paired differences have no spread (se={se!r}); need random replicates")
        sign = 1.0 if predicted >= 0 else -1.0
        zj = sign * mean / se
        pw = step_power(predicted, se, z)
        kind = "agrees" if zj > z else "opposes" if zj < -z else "flat" if pw >= power else "untested"
        steps.append(dict(predicted=float(predicted), measured=mean, se=se, z=float(zj), power=pw, kind=kind))
    kinds = [step["kind"] for step in steps]
    if all(kind == "agrees" for kind in kinds):
        verdict = "holds"
    elif "agrees" not in kinds:
        verdict = "not tested" if all(kind == "untested" for kind in kinds) else "does not hold"
    else:
        verdict = "holds in a regime"
    return {"steps": steps, "verdict": verdict}


def log_slope(x, log_means, log_ses) -> tuple[float, float]:
    """Weighted least-squares slope of mean log y against log x, and its standard error.

    x (K,) positive grid values; log_means, log_ses (K,): the mean of log y at each point
    and its standard error (weights 1 / se^2). For an equivalence test of a power law
    y ~ x^b against a predicted exponent.
    """
    x = np.log(np.asarray(x, dtype=float))
    y = np.asarray(log_means, dtype=float)
    w = 1.0 / np.asarray(log_ses, dtype=float) ** 2
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * y) / sxx
    return float(slope), float(1.0 / math.sqrt(sxx))


def coverage_probability(N: int, M: int) -> float:
    """P(M experts, each serving a truth drawn uniformly from N, cover every truth).

    Inclusion-exclusion: ``sum_j (-1)^j C(N, j) (1 - j/N)^M``. It approaches 1 only
    once M exceeds about N ln N (coupon collector), the count behind Proposition 1's
    condition M = Omega(N ln N).
    """
    N = check_int("N", N, minimum=1)
    M = check_int("M", M, minimum=1)
    return float(sum((-1) ** j * math.comb(N, j) * (1 - j / N) ** M for j in range(N + 1)))


def gap_explained(algorithm: float, closed: float, other: float) -> float:
    """Share of the gap between Algorithm 1 and the closed form that ``other`` closes: 1 - |A - o| / |A - c|."""
    gap = abs(algorithm - closed)
    if not gap > 0:
        raise ValueError("Algorithm 1 equals the closed form: no gap to explain")
    return float(1.0 - abs(algorithm - other) / gap)


def mixed_routing(N: int, M: int, purity: float) -> np.ndarray:
    """Q2 (N, M): a share ``purity`` of truth n's tasks to its expert set, the rest to the other experts.

    The expert sets are those of `default_routing` (M >= N: expert m serves truth
    m mod N); within the set and outside it the tasks are spread uniformly. With
    ``purity = 1`` this is `default_routing`; with ``purity = |M_n| / M`` it is random routing.
    """
    if not 0.0 <= purity <= 1.0:
        raise ValueError(f"purity={purity!r} must lie in [0, 1]")
    own = default_routing(N, M) > 0
    Q2 = np.empty((N, M))
    for n in range(N):
        inside, outside = own[n].sum(), (~own[n]).sum()
        if outside == 0:
            Q2[n] = 1.0 / M
            continue
        Q2[n] = np.where(own[n], purity / inside, (1.0 - purity) / outside)
    return Q2




def grid_values(header: dict, arrays: dict, labels, quantity: str) -> dict:
    """One quantity of the ``predictions`` experiment along a grid of its labels.

    quantity: ``"G"`` or ``"F"``. Returns ``{"alg": (K, R) Algorithm 1 per replicate at T,
    "closed": (K,) the phase model with the book's routing, "measured": (K,) with the
    measured routing, "configs": [config dicts]}``.
    """
    if quantity not in ("G", "F"):
        raise ValueError(f"quantity={quantity!r} must be 'G' or 'F'")
    labels = [str(label) for label in labels]
    return {
        "alg": np.stack([arrays[f"{label}/{quantity}_T"] for label in labels]),
        "closed": np.array([float(arrays[f"{label}/closed_{quantity}_T"]) for label in labels]),
        "measured": np.array([float(arrays[f"{label}/measured_{quantity}_T"]) for label in labels]),
        "configs": [header["configs"][label] for label in labels],
    }


def termination_slope(x, termination_rounds) -> tuple[float, float, np.ndarray]:
    """log-log slope of T2 against x over a grid, its standard error, and the median T2 per point.

    termination_rounds (K, R): per replicate, -1 for a gate that never stopped (left out).
    The slope is `log_slope` of the mean log T2 of the replicates that stopped.
    """
    means, ses, medians = [], [], []
    for row in np.asarray(termination_rounds):
        stopped = np.log(row[row > 0].astype(float))
        if stopped.size < 2:
            raise ValueError("fewer than two replicates terminated at a grid point: no slope")
        means.append(stopped.mean())
        ses.append(stopped.std(ddof=1) / math.sqrt(stopped.size))
        medians.append(float(np.exp(np.median(stopped))))
    slope, se = log_slope(x, means, ses)
    return slope, se, np.array(medians)


__all__ = [
    "STEP_POWER", "STEP_Z", "VERDICTS", "coverage_probability", "gap_explained", "grid_values", "log_slope",
    "mixed_routing", "step_power", "step_verdict", "termination_slope",
]
