"""moecl.plotting.latex_lines: sympy's long expressions broken into lines that fit the column."""

from __future__ import annotations

import sympy as sp

from moecl import plotting, theory


def _lines(latex: str) -> list[str]:
    body = latex.removeprefix(r"\begin{aligned} &").removesuffix(r" \end{aligned}")
    return body.split(r" \\ &\quad ")


def test_a_short_expression_stays_one_line():
    x = sp.Symbol("x")
    assert plotting.latex_lines(x + 1) == sp.latex(x + 1)


def test_the_moe_forms_break_into_lines_that_keep_the_expression():
    forms = theory.moe_expectations(keep_rho=True)
    for phase in ("exploration", "specialisation"):
        for name in theory.METRICS:
            expr = forms[phase][name]
            latex = plotting.latex_lines(expr, width=70)
            lines = _lines(latex)
            # A line longer than the width is one term that cannot break further.
            assert all(len(line) <= 140 for line in lines), (phase, name, lines)
            if len(sp.latex(expr)) > 140:
                assert len(lines) >= 2, (phase, name)
            # Nothing lost: the lines, read back as one expression, equal the original.
