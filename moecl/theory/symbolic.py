"""Sympy helpers shared by the closed forms of `moecl.theory` (book chapters: single expert, MoE theory).

`SYMBOLS` are the symbols of every form (r = 1 - s/d, rho = 1 - (1 - r)/M, rounds t, T,
T1, pool quantities S, D, D_in, and rho_s for sharing); `INDEX` holds the integer
summation indices; the helpers tidy what ``Sum(...).doit()`` returns.
"""

from __future__ import annotations

from types import SimpleNamespace

import sympy as sp

#: The sympy symbols of every form here (all positive; t, T, T1 are round counts).
SYMBOLS = SimpleNamespace(
    r=sp.Symbol("r", positive=True),
    rho=sp.Symbol("rho", positive=True),
    M=sp.Symbol("M", positive=True),
    t=sp.Symbol("t", positive=True),
    T=sp.Symbol("T", positive=True),
    T1=sp.Symbol("T1", nonnegative=True),
    S=sp.Symbol("S", positive=True),
    D=sp.Symbol("D", nonnegative=True),
    D_in=sp.Symbol("D_in", nonnegative=True),
)

#: The phase-2 retention factor with sharing within an expert set: rho_s = 1 - (1 - r) u,
#: u = |g| / N the probability that an expert is updated in a phase-2 round.
SYMBOLS.rho_s = sp.Symbol("rho_s", positive=True)

#: Integer summation indices i, j, k of the derivations.
INDEX = SimpleNamespace(
    i=sp.Symbol("i", integer=True, positive=True),
    j=sp.Symbol("j", integer=True, positive=True),
    k=sp.Symbol("k", integer=True, positive=True),
)


def generic_branch(expr):
    """Replace every Piecewise that ``Sum.doit()`` makes by its generic branch.

    The other branches are the degenerate cases ``rho = 1`` (or ``r = 1``), excluded
    by 0 < r < 1.
    """
    return expr.replace(lambda e: isinstance(e, sp.Piecewise), lambda e: e.args[-1].expr)


def collect_in(expr, variable, power, basis):
    """Tidy a closed form: coefficients of ``basis`` as partial fractions in ``variable``.

    ``power`` (e.g. r**T) is held fixed while the partial fractions are formed.
    """
    x = sp.Dummy("x", positive=True)
    expr = sp.expand(sp.powsimp(sp.expand(expr), force=True)).subs(power, x)
    parts = sp.collect(sp.expand(expr), basis, evaluate=False)
    out = sp.S.Zero
    for term, coefficient in parts.items():
        fractions = sp.Add.make_args(sp.apart(sp.together(coefficient), variable))
        out += term * sp.Add(*[sp.factor(fraction) for fraction in fractions])
    return out.subs(x, power)


def limit_in_rounds(expr, base, variable):
    """lim_{variable -> oo} expr for 0 < base < 1 (written base = exp(-lambda))."""
    lam = sp.Symbol("lambda", positive=True)
    value = sp.limit(expr.subs(base, sp.exp(-lam)), variable, sp.oo)
    return sp.simplify(value.subs(lam, -sp.log(base)))


def drop_decaying(expr):
    """Drop the terms of a specialisation form that vanish geometrically as t -> oo.

    Every power rho^(t - T1 + c) decays like rho^t (0 < rho < 1), faster than any power
    of t grows, so for limits and 1/t rates it can be set to 0; what is left is
    rational in t, where ``sympy.limit`` is quick and safe.
    """
    rho, t = SYMBOLS.rho, SYMBOLS.t
    return expr.replace(lambda e: isinstance(e, sp.Pow) and e.base == rho and e.exp.has(t), lambda e: sp.S.Zero)
