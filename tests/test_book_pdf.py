"""The PDF of the book (`bash scripts/book.sh --pdf`, issue 30 §4): built by Sphinx's LaTeX builder
with the book's own configuration, its first pages rendered to PNG (pdftoppm) and looked at.

* A small book (one page: a numbered equation, a figure, a formal statement, a table) is built
  with _config.yml's LaTeX settings (seconds to a minute): the PDF exists, its first page
  renders, the figure is on it in colour and the equation is typeset in TeX's math fonts.
* The whole book's PDF, when there is one (``$MOECL_BOOK_PDF``, else
  ``_build/latex/moecl-book.pdf`` from ``bash scripts/book.sh --pdf``): the same on its first
  pages (the front matter, the findings and the first chapters).

Skipped when XeLaTeX (xelatex, latexmk) or poppler (pdftoppm, pdffonts, pdfinfo) is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ("xelatex", "latexmk", "pdftoppm", "pdffonts", "pdfinfo")
#: Math fonts of TeX (Computer Modern / AMS): an equation typeset by LaTeX uses one of them.
MATH_FONTS = ("CMMI", "CMSY", "CMEX", "MSBM", "MSAM", "RSFS", "STIX", "LMMATH", "LATINMODERN-MATH")

pytestmark = pytest.mark.skipif(any(shutil.which(tool) is None for tool in TOOLS),
                                reason=f"needs XeLaTeX and poppler ({', '.join(TOOLS)}): Debian packages "
                                       "texlive-xetex texlive-latex-recommended texlive-latex-extra "
                                       "texlive-fonts-recommended fonts-freefont-otf xindy latexmk poppler-utils")


def render(pdf: Path, out: Path, first: int = 1, last: int = 1) -> list[np.ndarray]:
    """Pages ``first..last`` of ``pdf`` as RGB arrays (pdftoppm at 60 dpi)."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-r", "60", "-f", str(first), "-l", str(last), "-png", str(pdf), str(out / "page")],
                   check=True, capture_output=True, timeout=120)
    pages = []
    for png in sorted(out.glob("page-*.png")):
        with Image.open(png) as image:
            pages.append(np.asarray(image.convert("RGB"), dtype=float) / 255)
    return pages


def coloured_share(page: np.ndarray) -> float:
    """Share of a page's pixels in a saturated colour (a figure's curves; text is black on white)."""
    saturation = page.max(axis=2) - page.min(axis=2)
    return float(np.mean(saturation > 0.25))


def fonts(pdf: Path, first: int, last: int) -> set[str]:
    listing = subprocess.run(["pdffonts", "-f", str(first), "-l", str(last), str(pdf)], check=True,
                             capture_output=True, text=True, timeout=60).stdout
    return {line.split()[0].split("+")[-1].upper() for line in listing.splitlines()[2:] if line.strip()}


def page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, timeout=60).stdout
    return int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))


def _small_book(root: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"] = {"execute_notebooks": "off"}
    config["bibtex_bibfiles"] = ["references.bib"]
    config.pop("exclude_patterns", None)
    (root / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    shutil.copy(ROOT / "book" / "references.bib", root / "references.bib")
    figure, ax = plt.subplots(figsize=(5, 3))
    ax.plot([0, 1, 2], [0, 1, 4], color="#0072B2", linewidth=4, label="MoE, termination")
    ax.plot([0, 1, 2], [4, 1, 0], color="#D55E00", linewidth=4, label="MoE, no termination")
    ax.legend()
    figure.savefig(root / "curve.png", dpi=100)
    plt.close(figure)
    (root / "intro.md").write_text("""# A small book

The gate scores each expert,

$$
h_m(X_t, \\theta^{(m)}) = \\theta^{(m)\\top} \\bar x_t ,
$$ (eq-gate)

and {eq}`eq-gate` routes the task {cite}`li2025theory`.

```{figure} curve.png
:name: fig-curve

Two curves in the book's colours.
```

:::{prf:definition} Book definition B1: a book choice
:label: def-small
:nonumber:

A statement of the book's own.
:::

| method | accuracy |
| --- | --- |
| SEED | 0.93 |

```{bibliography}
```
""")
    return root


def test_a_small_book_builds_to_a_pdf_with_its_figure_and_equation(tmp_path):
    source = _small_book(tmp_path / "small")
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(source),
                             "--builder", "pdflatex"], capture_output=True, text=True, timeout=600)
    pdf = source / "_build" / "latex" / "moecl-book.pdf"
    assert result.returncode == 0 and pdf.is_file(), (result.stdout + result.stderr)[-4000:]
    pages = render(pdf, tmp_path / "png", 1, page_count(pdf))
    assert pages and all(page.shape[0] > 400 for page in pages)
    # The figure: its blue and vermillion curves, in colour, on some page.
    assert max(coloured_share(page) for page in pages) > 0.002
    assert any(name.startswith(MATH_FONTS) for name in fonts(pdf, 1, page_count(pdf))), fonts(pdf, 1, page_count(pdf))


def test_the_whole_books_first_pages_carry_figures_and_equations(tmp_path):
    pdf = Path(os.environ.get("MOECL_BOOK_PDF", ROOT / "_build" / "latex" / "moecl-book.pdf"))
    if not pdf.is_file():
        pytest.skip(f"no PDF of the whole book at {pdf}: build it with `bash scripts/book.sh --pdf`")
    total = page_count(pdf)
    last = min(total, 40)
    assert total >= 50, f"{pdf} has {total} pages; the whole book has far more"
    pages = render(pdf, tmp_path / "png", 1, last)
    assert len(pages) == last
    assert min(page.mean() for page in pages) > 0.5, "a page rendered (nearly) black"
    with_figures = [k + 1 for k, page in enumerate(pages) if coloured_share(page) > 0.002]
    assert len(with_figures) >= 3, f"coloured figures on pages {with_figures} of the first {last}"
    assert any(name.startswith(MATH_FONTS) for name in fonts(pdf, 1, last)), fonts(pdf, 1, last)
