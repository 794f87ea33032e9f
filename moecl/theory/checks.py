"""Checks of the closed forms against Monte Carlo, in standard errors (used by the theory chapters and tests).

`z_scores` compares Monte Carlo means (Algorithm 1 or the phase model) with expected
curves round by round, in standard errors, against the book's tolerance `Z_MAX`;
`format_z_scores` prints the comparison.
"""

from __future__ import annotations

import numpy as np

from .._checks import check_int
from ..metrics import mean_se


#: Book choice: a closed form passes a Monte Carlo check at a round when the mean is
#: within Z_MAX standard errors of it. With a few dozen comparisons per chapter, a
#: correct form fails with probability about 1e-3 at most (normal tails, two-sided).
Z_MAX = 4.0


METRICS = ("generalization", "forgetting")


def z_scores(samples, expected, rounds, names=METRICS) -> list:
    """Compare Monte Carlo means with expected curves at some rounds.

    samples: per-replicate curves (R, T) by metric name, as a dict or an object with
    those attributes (a `moecl.SimulationResult`, the dict of `simulate_phase_model`);
    expected: curves (T,) by name (`curves`, `phase_model_expectations`); rounds: the
    rounds t (1-based) to compare; NaN points (F_1) are skipped.

    Returns one dict per comparison with keys ``metric, t, mean, se, expected, z``
    (the Monte Carlo mean minus the expected value, in standard errors), ``relative``
    (the relative deviation) and ``detectable`` (Z_MAX standard errors relative to the
    expected value: the smallest relative error the check would catch).
    """
    rows = []
    for name in names:
        values = samples[name] if isinstance(samples, dict) else getattr(samples, name)
        values = np.asarray(values, dtype=float)
        target = np.asarray(expected[name], dtype=float)
        if values.ndim != 2 or values.shape[1] != target.shape[0]:
            raise ValueError(f"samples[{name!r}] has shape {values.shape}, expected (R, {target.shape[0]})")
        mean, se = mean_se(values)
        for t in rounds:
            t = check_int("t", t, minimum=1)
            if t > target.shape[0]:
                raise ValueError(f"t={t} exceeds the {target.shape[0]} rounds of the curves")
            if np.isnan(target[t - 1]):
                continue
            if not se[t - 1] > 0:
                raise ValueError(f"{name} at t={t} has no spread over replicates (se={se[t - 1]!r})")
            z = (mean[t - 1] - target[t - 1]) / se[t - 1]
            scale = abs(target[t - 1])
            rows.append(
                {
                    "metric": name,
                    "t": t,
                    "mean": float(mean[t - 1]),
                    "se": float(se[t - 1]),
                    "expected": float(target[t - 1]),
                    "z": float(z),
                    "relative": float((mean[t - 1] - target[t - 1]) / scale) if scale > 0 else np.nan,
                    "detectable": float(Z_MAX * se[t - 1] / scale) if scale > 0 else np.inf,
                }
            )
    return rows


def format_z_scores(rows, label: str = "") -> str:
    """The rows of `z_scores` as a table, one comparison a line."""
    lines = []
    for row in rows:
        lines.append(
            f"{label:>14} {row['metric'][0].upper()}_{row['t']:<4} mean {row['mean']:+.5f} "
            f"expected {row['expected']:+.5f}  z = {row['z']:+6.2f}  "
            f"relative {row['relative']:+7.2%}  detectable {row['detectable']:6.2%}"
        )
    return "\n".join(lines)
