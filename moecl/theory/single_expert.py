"""Proposition 4: one expert (M = 1), E[F_T] and E[G_T] in closed form (book chapter: single expert).

Exact for isotropic Gaussian features (`Config(features="isotropic")`); under the
paper's Definition 1 features only an approximation (the chapter measures how good).
"""

from __future__ import annotations

import functools

import sympy as sp

from .symbolic import INDEX, SYMBOLS, collect_in, generic_branch, limit_in_rounds


def single_expert_generalization():
    """E[G_T] for one expert (M = 1): ``r^T S + (1 - r^T)(1 - 1/T) D`` (Proposition 4).

    Symbols r, T, S, D of `SYMBOLS`. Exact for isotropic Gaussian features (where,
    with M = 1, the phase model is Algorithm 1); an approximation under Definition 1.
    """
    r, T, S, D = SYMBOLS.r, SYMBOLS.T, SYMBOLS.S, SYMBOLS.D
    return r**T * S + (1 - r**T) * (1 - 1 / T) * D


def single_expert_forgetting(evaluate: bool = True):
    """E[F_T] for one expert (M = 1), T >= 2 (Proposition 4).

    The statement of the book's single-expert chapter,

        E[F_T] = 1/(T-1) sum_{i=1}^{T-1} [ (r^T - r^i) S
                 + ((1 - r) - r^T + r^i - (1 - r) r^{T-i}) D ],

    as an unevaluated sympy ``Sum`` (``evaluate=False``) or summed by sympy
    (``Sum(...).doit()``, geometric sums, valid for 0 < r < 1) and collected into a
    closed form without a sum, equal to

        r^T S + (1 - r - r^T) D - (r - r^T)(S - r D) / ((1 - r)(T - 1)).

    Exact for isotropic Gaussian features; an approximation under Definition 1.
    """
    r, T, S, D = SYMBOLS.r, SYMBOLS.T, SYMBOLS.S, SYMBOLS.D
    i = INDEX.i
    summand = (r**T - r**i) * S + ((1 - r) - r**T + r**i - (1 - r) * r ** (T - i)) * D
    total = sp.Sum(summand, (i, 1, T - 1))
    if not evaluate:
        return total / (T - 1)
    return _single_expert_forgetting_closed()


@functools.lru_cache(maxsize=None)
def _single_expert_forgetting_closed():
    r, T, S, D = SYMBOLS.r, SYMBOLS.T, SYMBOLS.S, SYMBOLS.D
    summed = generic_branch(single_expert_forgetting(evaluate=False).doit())
    return collect_in(summed, T, r**T, [S, D])


def single_expert_limits() -> dict:
    """lim_{T -> oo} of E[G_T] and E[F_T] for one expert, 0 < r < 1 (sympy ``limit``).

    Returns ``{"generalization": D, "forgetting": (1 - r) D}``: the expert ends near
    the last task's truth, so an old task's error tends to the mean squared gap D,
    and forgetting to the share (1 - r) D that a task loses after it is learned.
    """
    r, T = SYMBOLS.r, SYMBOLS.T
    return {
        "generalization": limit_in_rounds(single_expert_generalization(), r, T),
        "forgetting": limit_in_rounds(single_expert_forgetting(), r, T),
    }
