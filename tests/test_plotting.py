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


def test_colours_for_keeps_fixed_colours_and_never_repeats():
    found = plotting.colours_for(["frozen", "single expert", "window", "MoE, termination", "strikes"])
    assert found["single expert"] == plotting.COLOURS["single expert"]
    assert found["MoE, termination"] == plotting.COLOURS["MoE, termination"]
    assert len(set(found.values())) == 5
    many = plotting.colours_for([f"x{k}" for k in range(12)])
    assert len(set(list(many.values())[:8])) == 8 and many["x11"] == plotting.GREY


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
