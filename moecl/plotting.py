"""Figures of the book: one style, one meaning per colour, bands with 95% confidence.

* `use_book_style` applies the style file shipped with the package
  (``moecl/styles/moecl.mplstyle``: sized for the book's column, legible fonts, the
  colour-blind-safe Okabe-Ito palette). Every chapter calls it once, in its setup cell.
* `COLOURS` fixes the colour of each recurring concept across the book ("single
  expert" is always black, "MoE, termination" always blue, ...); `colours_for` gives a
  figure's labels their colours: the fixed one for a known concept, the next free
  palette colour for any other.
* `better_worse` is the one convention for "better/worse" heatmaps: blue is better,
  red is worse, white is no difference, whichever direction the quantity runs;
  `cell_text` writes values into heatmap cells in black or white, whichever reads on
  the cell's colour.
* `band` draws a mean with its 95% confidence band (mean +- 1.96 standard errors),
  from replicates or from a stored summary; `mark_rounds` marks named rounds.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from .metrics import Z95, mean_se

#: The Okabe-Ito palette (Okabe and Ito, 2008), in the order of the style's colour cycle.
OKABE_ITO = {
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "bluish green": "#009E73",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "reddish purple": "#CC79A7",
    "black": "#000000",
    "yellow": "#F0E442",
}
#: Neutral grey for references (random routing, chance, a bound).
GREY = "#8C8C8C"

#: One colour per concept, the same in every chapter, and no colour for anything else: a
#: curve that is none of these concepts (a variant of one, a value of M) gets a shade of its
#: concept's colour (`shades`, `colours_for`), never another concept's colour. Draw the
#: reference curves (random routing, chance) dotted or dashed as well as grey.
COLOURS = {
    "single expert": OKABE_ITO["black"],  # also the deep chapters' one network fine-tuned in turn
    "MoE, termination": OKABE_ITO["blue"],
    "MoE, no termination": OKABE_ITO["vermillion"],
    "theory": OKABE_ITO["bluish green"],  # closed forms, the phase model, the paper's bounds
    "blind gate": OKABE_ITO["reddish purple"],
    "joint training": OKABE_ITO["orange"],
    "SEED": OKABE_ITO["sky blue"],
    "random routing": GREY,
}

#: Smallest legend text, in points at the book's figure dpi (`legend_sizes`, `use_book_style`).
MIN_LEGEND_PT = 8.0


def shades(colour: str, n: int) -> list[str]:
    """``n`` shades of ``colour``, light to dark, so that they differ in lightness, which
    colour-blind readers see: mixed with white (up to 55%) on the light side and with black
    (up to 40%) on the dark side, the colour itself near the middle; a colour too dark to
    darken (black) runs from 70% white to itself."""
    from matplotlib.colors import to_hex, to_rgb

    if n < 1:
        raise ValueError(f"need at least one shade, got n={n!r}")
    base = np.array(to_rgb(colour))
    dark = float(base @ [0.2126, 0.7152, 0.0722]) < 0.15
    out = []
    for mix in (np.linspace(0.7 if dark else 0.55, 0.0 if dark else -0.4, n) if n > 1 else [0.0]):
        target = np.ones(3) if mix > 0 else np.zeros(3)
        out.append(to_hex(base + abs(mix) * (target - base)))
    return out


def colours_for(labels, concept: str = "MoE, termination") -> dict[str, str]:
    """``{label: colour}`` for the curves of one figure.

    A label named in `COLOURS` gets its fixed colour; the other labels (variants of one
    concept: the re-opening rules of a gate, the balancing losses, ...) get distinct shades
    of ``concept``'s colour (`shades`), never the colour of another concept.
    """
    labels = list(labels)
    if concept not in COLOURS:
        raise ValueError(f"unknown concept {concept!r}; the concepts are {sorted(COLOURS)}")
    others = [label for label in labels if label not in COLOURS]
    found = {label: COLOURS[label] for label in labels if label in COLOURS}
    if others:
        taken = set(found.values())
        palette = [c for c in shades(COLOURS[concept], len(others) + 1) if c not in taken]
        if COLOURS[concept] not in taken:
            palette = [COLOURS[concept]] + [c for c in palette if c != COLOURS[concept]]
        found.update(zip(others, palette))
    return {label: found[label] for label in labels}


def expert_count_colours(Ms, concept: str = "MoE, termination") -> dict[int, str]:
    """``{M: colour}``: the numbers of experts as shades of one concept's colour, lighter for
    fewer experts; ``M = 1`` is the single expert (black)."""
    Ms = sorted({int(M) for M in Ms})
    many = [M for M in Ms if M > 1]
    colours = dict(zip(many, shades(COLOURS[concept], len(many)))) if many else {}
    if 1 in Ms:
        colours[1] = COLOURS["single expert"]
    return {M: colours[M] for M in Ms}


def style_path() -> str:
    """Path of the style file shipped with the package (``moecl/styles/moecl.mplstyle``)."""
    return str(resources.files("moecl") / "styles" / "moecl.mplstyle")


def use_book_style() -> None:
    """Apply the book's figure style to every figure drawn after this call, and record in
    every PNG drawn after it the size of its smallest legend text (`mark_legend_sizes`), which
    the book's browser check reads to judge it at the size the reader sees."""
    import matplotlib.pyplot as plt

    plt.style.use(style_path())
    mark_legend_sizes()


# --------------------------------------------------------------------------- legible legends

#: PNG text keys written by `mark_legend_sizes`: the smallest legend text in points, and in
#: pixels of the PNG image (points x dpi / 72).
LEGEND_PT_KEY, LEGEND_PX_KEY = "moecl:legend-min-pt", "moecl:legend-min-px"


def legend_sizes(figure) -> list[tuple[str, float]]:
    """``(text, size in points)`` of every text of every legend of ``figure`` (figure legends
    and axes legends, titles included), smallest first."""
    legends = list(figure.legends) + [ax.get_legend() for ax in figure.get_axes()]
    found = []
    for legend in legends:
        if legend is None or not legend.get_visible():
            continue
        texts = list(legend.get_texts()) + ([legend.get_title()] if legend.get_title().get_text() else [])
        found += [(text.get_text(), float(text.get_fontsize())) for text in texts if text.get_text()]
    return sorted(found, key=lambda item: item[1])


def small_legend_text(figure, min_pt: float = MIN_LEGEND_PT) -> list[str]:
    """The legend texts of ``figure`` below ``min_pt`` points, one line each (empty: readable)."""
    return [f"legend text {text!r} at {size:g} pt (< {min_pt:g} pt)" for text, size in legend_sizes(figure)
            if size < min_pt]


_MARKED = False


def mark_legend_sizes() -> None:
    """From now on every PNG matplotlib writes (the inline figures of a chapter included) carries
    its smallest legend text size as PNG text chunks (`LEGEND_PT_KEY`, `LEGEND_PX_KEY`).

    Matplotlib has no hook for "a figure is being written"; this wraps
    ``FigureCanvasBase.print_figure`` once (idempotent), adding PNG ``metadata`` only when the
    figure has a legend and the caller gave no metadata of its own.
    """
    global _MARKED
    if _MARKED:
        return
    import matplotlib
    from matplotlib.backend_bases import FigureCanvasBase

    original = FigureCanvasBase.print_figure

    def print_figure(self, filename, dpi=None, *args, **kwargs):
        fmt = kwargs.get("format") or (str(filename).rsplit(".", 1)[-1] if isinstance(filename, (str, bytes)) and "." in str(filename) else None)
        if (fmt or matplotlib.rcParams["savefig.format"]) == "png" and "metadata" not in kwargs:
            sizes = legend_sizes(self.figure)
            if sizes:
                chosen = dpi if dpi is not None else matplotlib.rcParams["savefig.dpi"]
                chosen = self.figure.dpi if chosen in (None, "figure") else float(chosen)
                smallest = sizes[0][1]
                kwargs["metadata"] = {LEGEND_PT_KEY: f"{smallest:g}", LEGEND_PX_KEY: f"{smallest * chosen / 72:.2f}"}
        return original(self, filename, dpi, *args, **kwargs)

    FigureCanvasBase.print_figure = print_figure
    _MARKED = True


#: Paul Tol's "light" scheme (colour-blind safe, pale enough for filled cells): the colours of
#: categories that are no concept of `COLOURS`, such as which ground truth an expert is closest to.
TOL_LIGHT = ["#77AADD", "#EE8866", "#EEDD88", "#FFAABB", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00", "#DDDDDD"]


def category_colours(n: int):
    """A ``ListedColormap`` of ``n`` distinct categorical colours (`TOL_LIGHT`), for an image whose
    cell values are the categories 0..n-1 (draw it with ``vmin=-0.5, vmax=n-0.5``) and a
    `category_legend` beside it, not a continuous colour bar."""
    from matplotlib.colors import ListedColormap

    if not 1 <= n <= len(TOL_LIGHT):
        raise ValueError(f"category_colours has {len(TOL_LIGHT)} colours, asked for n={n!r}")
    return ListedColormap(TOL_LIGHT[:n], name=f"categories{n}")


def category_legend(target, names, cmap, **legend_kwargs):
    """A legend of one filled square per category, ``names[k]`` in colour ``cmap(k)``, on a figure
    or an axes (``target.legend``); returns the legend."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=cmap(k), edgecolor="0.4", linewidth=0.5, label=name) for k, name in enumerate(names)]
    return target.legend(handles=handles, **legend_kwargs)


# --------------------------------------------------------------------------- names a reader knows

_METHOD_NAMES = {"finetune": "one network, fine-tuned in turn", "replay": "one network with replay",
                 "joint": "joint training", "joint-task-aware": "joint training, a head per task",
                 "single": "single expert"}


def reader_name(label: str) -> str:
    """The name a reader knows for a run's internal label: ``gate-M4-no-termination`` ->
    "MoE gate, M = 4, no termination", ``seed-M8`` -> "SEED, M = 8", ``M8-noterm`` ->
    "M = 8, no termination", ``M1`` -> "single expert", ``finetune`` -> "one network,
    fine-tuned in turn", ``finetune-same-size-M4`` -> "one network the size of 4 experts",
    ``oracle-M8`` -> "oracle routing, M = 8" (labels of `moecl.experiments`: deep_methods and paper)."""
    import re

    if label in _METHOD_NAMES:
        return _METHOD_NAMES[label]
    same_size = re.fullmatch(r"finetune-same-size-M(\d+)", label)
    if same_size:
        return f"one network the size of {int(same_size.group(1))} experts"
    oracle = re.fullmatch(r"oracle-M(\d+)", label)
    if oracle:
        return f"oracle routing, M = {int(oracle.group(1))}"
    match = re.fullmatch(r"(?:(gate|seed)-)?M(\d+)(-no-?term(?:ination)?)?", label)
    if match is None:
        raise ValueError(f"no reader's name for the label {label!r}")
    method, M, no_termination = match.group(1), int(match.group(2)), bool(match.group(3))
    if method is None and M == 1:
        return "single expert"
    if method == "seed":
        if no_termination:
            raise ValueError(f"no reader's name for the label {label!r} (SEED has no termination)")
        return f"SEED, M = {M}"
    prefix = "MoE gate, " if method == "gate" else ""
    return f"{prefix}M = {M}, {'no termination' if no_termination else 'termination'}"


def concept_of(label: str) -> str:
    """The concept of `COLOURS` a run's internal label belongs to (see `reader_name`)."""
    name = reader_name(label)
    if name.startswith(("one network", "single expert")):
        return "single expert"
    if name.startswith("joint training"):
        return "joint training"
    if name.startswith("oracle routing"):  # the routing the theory assumes after exploration
        return "theory"
    if name.startswith("SEED"):
        return "SEED"
    return "MoE, no termination" if name.endswith("no termination") else "MoE, termination"


def method_style(label: str) -> dict:
    """``color``, ``linestyle`` and ``label`` (the reader's name) for a run's internal label:
    the colour of its concept, solid for M <= 4, dashed for M = 8, dotted above; a baseline that
    shares its concept's colour with the method it is measured against (one network the size of the
    mixture, joint training with a head per task) is dash-dotted."""
    import re

    match = re.search(r"M(\d+)", label)
    M = int(match.group(1)) if match else 1
    linestyle = "-" if M <= 4 else "--" if M == 8 else ":"
    if label.startswith("finetune-same-size") or label == "joint-task-aware":
        linestyle = "-." if M <= 4 else (0, (3, 1, 1, 1, 1, 1))
    return {"color": COLOURS[concept_of(label)], "linestyle": linestyle, "label": reader_name(label)}


# --------------------------------------------------------------------------- heatmaps

#: Diverging colormaps of the "better/worse" convention (ColorBrewer RdBu, colour-blind safe).
BETTER_WORSE_CMAPS = {"lower": "RdBu_r", "higher": "RdBu"}


def better_worse(centre: float = 0.0, vmin: float | None = None, vmax: float | None = None,
                 lower_is_better: bool = True, span: float | None = None) -> dict:
    """``cmap`` and ``norm`` for a heatmap where blue means better and red worse.

    ``centre`` is the value of no difference (0 for a gap, 1 for a ratio) and shows
    white. ``lower_is_better`` says which direction is better for this quantity (an
    error: lower; a purity: higher); the colours follow, so blue is better on every
    heatmap of the book. Give ``vmin``/``vmax`` (they may sit unevenly around the
    centre) or a symmetric ``span``. Use as ``ax.imshow(values, **better_worse(...))``.
    """
    import matplotlib
    from matplotlib.colors import TwoSlopeNorm

    if span is not None:
        if vmin is not None or vmax is not None:
            raise ValueError("give either span or vmin/vmax")
        vmin, vmax = centre - span, centre + span
    if vmin is None or vmax is None:
        raise ValueError("better_worse needs vmin and vmax (or span)")
    if not vmin < centre < vmax:
        raise ValueError(f"need vmin < centre < vmax, got {vmin!r} < {centre!r} < {vmax!r}")
    cmap = matplotlib.colormaps[BETTER_WORSE_CMAPS["lower" if lower_is_better else "higher"]]
    return {"cmap": cmap, "norm": TwoSlopeNorm(vcenter=centre, vmin=vmin, vmax=vmax)}


def text_colour(rgba) -> str:
    """Black or white, whichever reads on a background of colour ``rgba`` (relative luminance)."""
    r, g, b = (float(c) for c in rgba[:3])

    def linear(c):
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    luminance = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b)
    return "black" if luminance > 0.179 else "white"


def cell_text(ax, image, texts, **text_kwargs) -> list:
    """Write ``texts[i, j]`` into cell (i, j) of ``image`` (an ``imshow`` result), readable on its colour.

    Rows run as the image shows them (``origin`` and ``extent`` are honoured). Empty
    strings write nothing. Returns the text artists.
    """
    values = np.ma.asarray(image.get_array())
    texts = np.asarray(texts, dtype=object)
    if texts.shape != values.shape[:2]:
        raise ValueError(f"texts have shape {texts.shape}, the image {values.shape[:2]}")
    rows, columns = texts.shape
    x0, x1, y0, y1 = image.get_extent()
    if image.origin == "upper":
        y0, y1 = y1, y0
    kwargs = {"ha": "center", "va": "center", "fontsize": 8, **text_kwargs}
    fixed = kwargs.pop("color", None)
    artists = []
    for i in range(rows):
        for j in range(columns):
            if texts[i, j] in ("", None):
                continue
            value = values[i, j]
            if fixed is not None:
                colour = fixed
            else:
                colour = "black" if np.ma.is_masked(value) else text_colour(image.cmap(image.norm(value)))
            x = x0 + (j + 0.5) * (x1 - x0) / columns
            y = y0 + (i + 0.5) * (y1 - y0) / rows
            artists.append(ax.text(x, y, str(texts[i, j]), color=colour, **kwargs))
    return artists


# --------------------------------------------------------------------------- curves


def band(ax, x, values, key: str | None = None, *, label: str | None = None, color=None, alpha: float = 0.25,
         **line_kwargs):
    """Draw a mean with its 95% confidence band (mean +- 1.96 standard errors).

    Either from replicates: ``values`` of shape (R, len(x)) (NaN ignored), or from a
    stored summary: ``values`` the arrays of a stored run and ``key`` the summary's
    name (its ``key/mean`` and ``key/se`` arrays), e.g.
    ``band(ax, arrays["rounds"], arrays, "M8/forgetting", label="M = 8")``.
    Returns the line.
    """
    if key is None:
        mean, se = mean_se(values)
    else:
        mean, se = np.asarray(values[f"{key}/mean"], dtype=float), np.asarray(values[f"{key}/se"], dtype=float)
    (line,) = ax.plot(x, mean, label=label, color=color, **line_kwargs)
    ax.fill_between(x, mean - Z95 * se, mean + Z95 * se, color=line.get_color(), alpha=alpha, linewidth=0)
    return line


def mark_rounds(ax, rounds: dict, **kwargs):
    """Vertical dashed lines at named rounds, e.g. ``{"T1": 26}``."""
    for name, t in rounds.items():
        ax.axvline(t, linestyle="--", color="0.4", linewidth=1, **kwargs)
        ax.annotate(name, (t, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                    textcoords="offset points", color="0.3")


def latex_lines(expr, width: int = 70) -> str:
    """A long sympy expression as an ``aligned`` display broken between terms, so that
    it fits the book's column (book/moe_theory.md, "In sympy"); each line holds at most
    about ``width`` characters of LaTeX, unless one term alone is longer.

    Sums break between their terms; a product with one long sum inside, such as
    ``1/(t-1) * (a + b + ...)``, breaks inside ``\\Big[ ... \\Big]``.
    """
    import sympy as sp

    def tokens(e) -> list[str]:
        if len(sp.latex(e)) <= width:
            return [sp.latex(e)]
        if isinstance(e, sp.Add):
            out = []
            for term in e.as_ordered_terms():
                sign = "+"
                if term.could_extract_minus_sign():
                    sign, term = "-", -term
                parts = tokens(term)
                parts[0] = f"{sign} {parts[0]}" if out or sign == "-" else parts[0]
                out += parts
            return out
        if isinstance(e, sp.Mul):
            sums = [f for f in e.args if isinstance(f, sp.Add)]
            if len(sums) == 1:
                rest = sp.Mul(*[f for f in e.args if f is not sums[0]])
                prefix = "-" if rest == -1 else "" if rest == 1 else sp.latex(rest)
                inner = tokens(sums[0])
                inner[0] = prefix + r" \Big[ " + inner[0]
                inner[-1] = inner[-1] + r" \Big]"
                return inner
        return [sp.latex(e)]

    lines: list[str] = []
    for token in tokens(expr):
        if lines and len(lines[-1]) + len(token) <= width:
            lines[-1] += " " + token
        else:
            lines.append(token)
    if len(lines) == 1:
        return lines[0]
    return r"\begin{aligned} &" + r" \\ &\quad ".join(lines) + r" \end{aligned}"
