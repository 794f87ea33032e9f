"""moecl.plotting: the book's style file, fixed concept colours, better/worse heatmaps, bands."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from moecl import plotting  # noqa: E402
from moecl.metrics import Z95  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _restore_rc():
    with matplotlib.rc_context():
        yield
    plt.close("all")


# --------------------------------------------------------------------------- style


def test_style_file_ships_with_the_package():
    path = Path(plotting.style_path())
    assert path.is_file() and path.suffix == ".mplstyle" and path.parent.parent == ROOT / "moecl"
    with open(ROOT / "pyproject.toml", "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["moecl"]
    assert any(path.relative_to(ROOT / "moecl").match(pattern) for pattern in package_data)


def test_use_book_style_sets_column_width_legible_fonts_and_the_palette():
    plotting.use_book_style()
    rc = plt.rcParams
    width, height = rc["figure.figsize"]
    # The column of the book is about 700-750 px; figures render at figure.dpi.
    assert 650 <= width * rc["figure.dpi"] <= 760 and height < width
    # Legible at that size: at least 9 pt everywhere (12.5 px at 100 dpi).
    for key in ("font.size", "axes.labelsize", "axes.titlesize", "xtick.labelsize", "ytick.labelsize", "legend.fontsize"):
        size = rc[key]
        assert isinstance(size, float) and size >= 9, (key, size)
    cycle = [c.upper() for c in rc["axes.prop_cycle"].by_key()["color"]]
    assert cycle == [c.upper() for c in plotting.OKABE_ITO.values()]


def test_style_parses_without_warnings():
    code = (f"import warnings; warnings.simplefilter('error'); import matplotlib; matplotlib.use('Agg');"
            f"import matplotlib.pyplot as plt; plt.style.use({plotting.style_path()!r});"
            "fig, ax = plt.subplots(1, 2); ax[0].plot([1, 2]); fig.tight_layout(); fig.savefig('/dev/null', format='png')")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- colours


def _distance(a, b):
    return float(np.linalg.norm(np.subtract(to_rgb(a), to_rgb(b))))


def test_concepts_have_distinct_fixed_colours():
    colours = list(plotting.COLOURS.values())
    assert len(set(c.upper() for c in colours)) == len(colours), "one colour, one concept"
    for i, a in enumerate(colours):
        for b in colours[i + 1:]:
            assert _distance(a, b) > 0.25, (a, b)
    for concept in ("single expert", "MoE, termination", "MoE, no termination", "random routing", "theory"):
        assert concept in plotting.COLOURS
    allowed = {c.upper() for c in plotting.OKABE_ITO.values()} | {plotting.GREY.upper()}
    assert {c.upper() for c in colours} <= allowed  # colour-blind-safe palette only


def test_colours_for_keeps_fixed_colours_and_gives_others_shades_of_one_concept():
    found = plotting.colours_for(["frozen", "single expert", "window", "MoE, termination", "strikes"])
    assert found["single expert"] == plotting.COLOURS["single expert"]
    assert found["MoE, termination"] == plotting.COLOURS["MoE, termination"]
    assert len(set(found.values())) == 5
    concept_colours = {c.upper() for c in plotting.COLOURS.values()}
    # One colour per concept: a label that is no concept never gets another concept's colour
    # (synthetic.md's "M = 2" was vermillion, the colour of "no termination").
    for labels in (["M = 2", "M = 4", "M = 16"], [f"x{k}" for k in range(6)]):
        for concept in ("MoE, termination", "SEED"):
            colours = plotting.colours_for(labels, concept=concept)
            assert len(set(colours.values())) == len(labels)
            others = concept_colours - {plotting.COLOURS[concept].upper()}
            assert not {c.upper() for c in colours.values()} & others, colours
    with pytest.raises(ValueError, match="unknown concept 'MoE'"):
        plotting.colours_for(["a"], concept="MoE")


def _lightness(colour):
    r, g, b = to_rgb(colour)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_shades_run_light_to_dark_around_the_colour():
    blue = plotting.COLOURS["MoE, termination"]
    five = plotting.shades(blue, 5)
    assert len(set(five)) == 5
    assert [_lightness(c) for c in five] == sorted((_lightness(c) for c in five), reverse=True)
    assert _lightness(five[0]) - _lightness(five[-1]) > 0.3  # told apart by lightness alone
    assert plotting.shades(blue, 1) == [blue.lower()]
    grey = plotting.shades(plotting.COLOURS["single expert"], 8)
    assert len(set(grey)) == 8 and grey[-1] == "#000000"
    with pytest.raises(ValueError, match="n=0"):
        plotting.shades(blue, 0)


def test_expert_count_colours_single_expert_black_and_more_experts_darker():
    colours = plotting.expert_count_colours([16, 1, 2, 4, 8])
    assert list(colours) == [1, 2, 4, 8, 16]
    assert colours[1] == plotting.COLOURS["single expert"]
    light = [_lightness(colours[M]) for M in (2, 4, 8, 16)]
    assert light == sorted(light, reverse=True) and len(set(light)) == 4
    assert not {colours[M] for M in (2, 4, 8, 16)} & {plotting.COLOURS["MoE, no termination"]}


@pytest.mark.parametrize("label, name, concept, linestyle", [
    ("gate-M4-no-termination", "MoE gate, M = 4, no termination", "MoE, no termination", "-"),
    ("gate-M8", "MoE gate, M = 8, termination", "MoE, termination", "--"),
    ("seed-M4", "SEED, M = 4", "SEED", "-"),
    ("finetune", "one network, fine-tuned in turn", "single expert", "-"),
    ("joint", "joint training", "joint training", "-"),
    ("M1", "single expert", "single expert", "-"),
    ("M8-noterm", "M = 8, no termination", "MoE, no termination", "--"),
    ("M16", "M = 16, termination", "MoE, termination", ":"),
    ("finetune-same-size-M4", "one network the size of 4 experts", "single expert", "-."),
    ("finetune-same-size-M8", "one network the size of 8 experts", "single expert", (0, (3, 1, 1, 1, 1, 1))),
    ("oracle-M8", "oracle routing, M = 8", "theory", "--"),
    ("joint-task-aware", "joint training, a head per task", "joint training", "-."),
])
def test_reader_names_and_styles_of_internal_labels(label, name, concept, linestyle):
    assert plotting.reader_name(label) == name
    assert plotting.concept_of(label) == concept
    assert plotting.method_style(label) == {"color": plotting.COLOURS[concept], "linestyle": linestyle, "label": name}


def test_reader_name_refuses_an_unknown_label():
    with pytest.raises(ValueError, match="'gate-X'"):
        plotting.reader_name("gate-X")
    with pytest.raises(ValueError, match="SEED has no termination"):
        plotting.reader_name("seed-M4-no-termination")


def test_every_label_of_the_experiments_has_a_reader_name():
    from moecl.experiments.deep_methods import DEEP_METHODS, LONG_METHODS

    for label in list(DEEP_METHODS) + list(LONG_METHODS) + ["M1", "M2", "M4", "M8", "M16", "M8-noterm", "M4-noterm"]:
        name = plotting.reader_name(label)
        assert "-" not in name.replace("fine-tuned", ""), (label, name)  # no internal id left


# --------------------------------------------------------------------------- legible legends


def test_small_legend_text_is_found_in_figure_and_axes_legends():
    plotting.use_book_style()
    fig, axes = plt.subplots(1, 2)
    axes[0].plot([0, 1], label="a")
    axes[0].legend()  # the style's 9 pt
    axes[1].plot([0, 1], label="b")
    axes[1].legend(fontsize=6, title="t")
    assert plotting.small_legend_text(fig) == ["legend text 'b' at 6 pt (< 8 pt)"]
    fig.legend(["c"], fontsize=7)
    assert len(plotting.small_legend_text(fig)) == 2
    assert plotting.legend_sizes(fig)[0] == ("b", 6.0)


def test_pngs_carry_their_smallest_legend_size(tmp_path):
    from PIL import Image

    plotting.use_book_style()
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.plot([0, 1], label="a")
    ax.legend(fontsize=7.5)
    fig.savefig(tmp_path / "a.png", dpi=144)
    fig.savefig(tmp_path / "b.png", dpi=144, metadata={"Title": "mine"})  # the caller's metadata wins
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    fig.savefig(tmp_path / "c.png")
    with Image.open(tmp_path / "a.png") as image:
        assert image.text[plotting.LEGEND_PT_KEY] == "7.5"
        assert float(image.text[plotting.LEGEND_PX_KEY]) == pytest.approx(7.5 * 144 / 72, abs=0.01)
    with Image.open(tmp_path / "b.png") as image:
        assert plotting.LEGEND_PX_KEY not in image.text and image.text["Title"] == "mine"
    with Image.open(tmp_path / "c.png") as image:
        assert plotting.LEGEND_PX_KEY not in image.text  # no legend, no mark


def test_the_inline_backend_marks_its_pngs():
    """The chapters' figures reach the book through IPython's print_figure (the inline backend)."""
    from IPython.core.pylabtools import print_figure
    from PIL import Image
    import io

    plotting.use_book_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1], label="a")
    ax.legend()
    with Image.open(io.BytesIO(print_figure(fig, "png"))) as image:
        assert float(image.text[plotting.LEGEND_PX_KEY]) == pytest.approx(9 * fig.dpi / 72, abs=0.01)


# --------------------------------------------------------------------------- heatmaps


def _rgb(image, value):
    return np.array(image.cmap(image.norm(value))[:3])


@pytest.mark.parametrize("lower_is_better, better, worse", [(True, 0.2, 1.3), (False, 1.3, 0.2)])
def test_better_is_blue_and_worse_is_red_in_either_direction(lower_is_better, better, worse):
    fig, ax = plt.subplots()
    image = ax.imshow(np.array([[better, 1.0, worse]]),
                      **plotting.better_worse(centre=1.0, vmin=0.0, vmax=1.5, lower_is_better=lower_is_better))
    good, neutral, bad = _rgb(image, better), _rgb(image, 1.0), _rgb(image, worse)
    assert good[2] > good[0] + 0.2, good  # blue
    assert bad[0] > bad[2] + 0.2, bad  # red
    assert np.all(neutral > 0.9), neutral  # white at the centre


def test_better_worse_arguments():
    assert plotting.better_worse(span=2.0)["norm"].vmin == -2.0
    with pytest.raises(ValueError):
        plotting.better_worse(centre=1.0, vmin=1.2, vmax=2.0)
    with pytest.raises(ValueError):
        plotting.better_worse(centre=0.0)
    with pytest.raises(ValueError):
        plotting.better_worse(span=1.0, vmin=-1.0, vmax=1.0)


def test_text_colour_contrasts():
    assert plotting.text_colour((0.05, 0.05, 0.4)) == "white"
    assert plotting.text_colour((1.0, 1.0, 0.9)) == "black"
    assert plotting.text_colour(matplotlib.colormaps["viridis"](0.0)) == "white"
    assert plotting.text_colour(matplotlib.colormaps["viridis"](1.0)) == "black"


@pytest.mark.parametrize("origin", ["upper", "lower"])
def test_cell_text_sits_on_its_cell_in_a_readable_colour(origin):
    values = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    fig, ax = plt.subplots()
    image = ax.imshow(values, origin=origin, cmap="viridis")
    texts = np.array([[f"{v:g}" for v in row] for row in values])
    texts[1, 1] = ""
    artists = plotting.cell_text(ax, image, texts)
    assert len(artists) == 5
    for artist in artists:
        x, y = artist.get_position()
        value = float(artist.get_text())
        assert values[int(round(y)), int(round(x))] == value  # imshow puts cell (i, j) at (j, i)
        assert artist.get_color() == plotting.text_colour(image.cmap(image.norm(value)))
    extent = ax.imshow(values, origin="lower", extent=(0, 30, 0, 20))
    (first,) = plotting.cell_text(ax, extent, np.array([["a", "", ""], ["", "", ""]]), color="red")
    assert first.get_position() == (5.0, 5.0) and first.get_color() == "red"
    with pytest.raises(ValueError):
        plotting.cell_text(ax, image, texts[:1])


# --------------------------------------------------------------------------- bands


def test_band_from_replicates_and_from_a_stored_summary_agree():
    from moecl.results import summarise

    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 5))
    x = np.arange(5)
    fig, ax = plt.subplots()
    line_a = plotting.band(ax, x, values, label="replicates", color="C0")
    line_b = plotting.band(ax, x, summarise(values, "A/g"), "A/g", label="stored", color="C1", linestyle="--")
    assert np.allclose(line_a.get_ydata(), line_b.get_ydata())
    assert line_b.get_linestyle() == "--" and line_b.get_label() == "stored"
    upper = [c.get_paths()[0].vertices[:, 1].max() for c in ax.collections]
    mean, se = values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(30)
    assert upper == pytest.approx([np.max(mean + Z95 * se)] * 2)


def test_band_is_the_only_band_in_the_package():
    hits = [p for p in (ROOT / "moecl").rglob("*.py") if re.search(r"^def (summary_)?band\(", p.read_text(), re.M)]
    assert hits == [ROOT / "moecl" / "plotting.py"]


def test_categories_are_distinct_pale_and_no_concept_colour():
    cmap = plotting.category_colours(4)
    colours = [cmap(k) for k in range(4)]
    assert len({tuple(c) for c in colours}) == 4
    concepts = [to_rgb(c) for c in plotting.COLOURS.values()]
    assert min(_distance(c[:3], k) for c in colours for k in concepts) > 0.1
    fig, ax = plt.subplots()
    legend = plotting.category_legend(ax, ["truth 1", "truth 2", "truth 3", "truth 4"], cmap)
    assert [t.get_text() for t in legend.get_texts()] == ["truth 1", "truth 2", "truth 3", "truth 4"]
    with pytest.raises(ValueError, match="n=12"):
        plotting.category_colours(12)
