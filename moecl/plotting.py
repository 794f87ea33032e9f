"""Plotting helpers shared by the chapters (matplotlib)."""

from __future__ import annotations

import numpy as np

from .metrics import Z95, mean_se


def band(ax, x, values, label: str | None = None, color=None, **line_kwargs):
    """Plot the replicate mean of ``values`` (R, len(x)) with its 95% confidence band."""
    mean, se = mean_se(values)
    (line,) = ax.plot(x, mean, label=label, color=color, **line_kwargs)
    ax.fill_between(x, mean - Z95 * se, mean + Z95 * se, color=line.get_color(), alpha=0.25, linewidth=0)
    return line


def mark_rounds(ax, rounds: dict, **kwargs):
    """Vertical dashed lines at named rounds, e.g. ``{"T1": 26}``."""
    for name, t in rounds.items():
        ax.axvline(t, linestyle="--", color="0.4", linewidth=1, **kwargs)
        ax.annotate(name, (t, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", color="0.3")
