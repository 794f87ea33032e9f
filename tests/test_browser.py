"""Browser check of the rendered book (`scripts/browser_check.py`, Playwright + the system Chromium).

The whole-book test builds the book (from the chapters nbval executed earlier in the same
session, conftest.py: about 20 s, and fails at once when a chapter failed there; run alone,
it executes every chapter, 8-12 minutes on 2 cores) with a local MathJax, loads every page in the light and the dark theme and asserts that no page
has an equation, code block or table wider than its box, a squeezed table column, a
MathJax error, an uncaptioned figure, a broken internal link or anchor, an unresolved
citation, a failed request or raw TeX, a traceback or a filesystem path in its text.
Screenshots of failing pages go to ``_build/browser/`` (or ``$MOECL_BROWSER_ARTEFACTS``),
which CI keeps as artefacts.

Controls (environment):

* ``MOECL_BROWSER`` unset or ``auto``: the checker's own tests run on a small hand-made
  site when Chromium, Playwright and MathJax are installed (seconds) and skip with the
  reason otherwise; the whole-book test is skipped (it needs ``MOECL_BROWSER=1``).
  ``1``: everything runs, and a missing browser is a failure (.ci/run, after
  ``scripts/browser_setup.sh``). ``0``: every browser test is skipped.
* ``MOECL_BROWSER_HTML``: check this existing build (made by
  ``scripts/browser_check.py --build-only``) instead of building.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("browser_check", ROOT / "scripts" / "browser_check.py")
browser_check = importlib.util.module_from_spec(_spec)
sys.modules["browser_check"] = browser_check
_spec.loader.exec_module(browser_check)

MODE = os.environ.get("MOECL_BROWSER", "auto").strip().lower()
CHROMIUM = browser_check.find_chromium()
MATHJAX = browser_check.find_mathjax()
PLAYWRIGHT = browser_check.have_playwright()


def _require_browser():
    if MODE == "0":
        pytest.skip("MOECL_BROWSER=0")
    missing = []
    if CHROMIUM is None:
        missing.append("Chromium (Debian package chromium)")
    if not PLAYWRIGHT:
        missing.append("Playwright (pip package playwright)")
    if MATHJAX is None:
        missing.append("MathJax 3 (npm package mathjax@3)")
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed: run `bash scripts/browser_setup.sh`"
    if MODE == "1":
        pytest.fail(f"MOECL_BROWSER=1 but {message}")
    pytest.skip(message)


# --------------------------------------------------------------------------- without a browser


def _probe(**fields):
    probe = {"overflow": [], "squeezed": [], "figures": [], "images": [], "links": [], "citations": [],
             "mathjax": True, "mathElements": 1, "rendered": 1, "mathErrors": [], "prose": "A clean page.",
             "theme": "light"}
    probe.update(fields)
    return probe


def test_page_problems_accepts_a_clean_page(tmp_path):
    (tmp_path / "a.html").write_text('<h1 id="top">a</h1>')
    probe = _probe(links=["http://127.0.0.1:1/a.html#top", "https://example.org/x"],
                   figures=[{"src": "http://127.0.0.1:1/_images/a.png", "captioned": True, "where": ""}],
                   citations=[{"text": "[Li et al., 2025]", "links": ["http://127.0.0.1:1/a.html#top"]}])
    assert browser_check.page_problems(probe, [], "http://127.0.0.1:1", tmp_path, {}) == []


def test_page_problems_names_every_rule(tmp_path):
    (tmp_path / "a.html").write_text('<p id="here">a</p>')
    origin = "http://127.0.0.1:1"
    probe = _probe(
        overflow=[{"kind": "equation", "excess": 22, "where": "#equation-eq-x", "text": "L = ..."}],
        squeezed=[{"chars": 3.2, "where": "#five-ways", "text": '"finetune"'}],
        mathElements=3, rendered=2, mathErrors=["Missing close brace"],
        figures=[{"src": f"{origin}/_images/b.png", "captioned": False, "where": "#fig"}],
        images=[{"src": f"{origin}/missing.png", "ok": False}],
        links=[f"{origin}/a.html#here", f"{origin}/a.html#nowhere", f"{origin}/b.html"],
        citations=[{"text": "[]", "links": []}],
        prose="see \\frac{a}{b} and {eq}`eq-x`; Traceback (most recent call last); data in /home/runner/x",
    )
    problems = browser_check.page_problems(probe, ["404 http://127.0.0.1:1/x.js"], origin, tmp_path, {})
    rules = sorted({problem.split(":")[0] for problem in problems})
    assert rules == ["caption", "citation", "image", "link", "math", "overflow", "request", "squeezed column", "text"]
    text = "\n".join(problems)
    assert "wider than its box by 22 px" in text and "3.2 characters per line" in text
    assert "2 MathJax outputs for 3 math elements" in text and "MathJax error: Missing close brace" in text
    assert "broken anchor http://127.0.0.1:1/a.html#nowhere" in text and "broken link http://127.0.0.1:1/b.html" in text
    assert "a.html#here" not in text
    for rule in ("raw TeX", "raw cross-reference", "traceback", "absolute path"):
        assert f"text: {rule}" in text, rule


def test_page_list_skips_copies_and_screenshot_names(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "x.html").write_text("static copy")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text("<html><body>intro</body></html>")
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    assert [str(p) for p in browser_check.html_pages(tmp_path)] == ["book/intro.html", "index.html"]
    assert browser_check.redirect_target(tmp_path / "index.html") == "book/intro.html"
    assert browser_check.screenshot_name("book/setting.html", "dark") == "book-setting-dark.png"


# --------------------------------------------------------------------------- with a browser

# pydata-sphinx-theme's own rule: the displayed equation's container scrolls (and clips).
# Its code in table cells may break anywhere, which is how SEED's method table came to squeeze a
# column of code to about 3 characters per line.
_THEME_CSS = ("<style>mjx-container{overflow:auto} article{width:500px} td{padding:2px} "
              "td code{overflow-wrap:anywhere}</style>")


def _tiny_site(root: Path) -> Path:
    """good.html passes every rule; bad.html breaks each one once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from moecl import plotting

    plotting.mark_legend_sizes()
    html = root / "site"
    (html / "_images").mkdir(parents=True)
    browser_check.install_mathjax(html, MATHJAX)
    figure, axes = plt.subplots(figsize=(1, 1))
    axes.plot([0, 1], [0, 1])
    figure.savefig(html / "_images" / "plot.png")
    plt.close(figure)
    # Legends: 9 pt in a 4 in figure shown at its natural size (12.5 px), and 6 pt in a 14 in
    # figure squeezed into the 500 px column (about 3 px), as the deep chapter's long-run figure was.
    for name, inches, points in (("legend-ok.png", 4, 9), ("legend-small.png", 14, 6)):
        figure, axes = plt.subplots(figsize=(inches, 2), dpi=100)
        axes.plot([0, 1], [0, 1], label="one network, fine-tuned in turn")
        axes.legend(fontsize=points)
        figure.savefig(html / "_images" / name, dpi=100)
        plt.close(figure)
    head = f'<script defer src="_static/mathjax/tex-mml-chtml.js"></script>{_THEME_CSS}'
    (html / "good.html").write_text(
        f"<html><head>{head}</head><body><article class='bd-article'><h1 id='top'>Good</h1>"
        "<p>Inline <span class='math notranslate nohighlight'>\\(\\sigma_0^2\\)</span>, cited "
        "<span class='bibtex-citation'>[<a href='good.html#top'>Li et al., 2025</a>]</span>.</p>"
        "<div class='math notranslate nohighlight' id='equation-short'>\\[a + b\\]</div>"
        "<table><tr><th>method</th><th>accuracy</th></tr><tr><td>SEED</td><td>0.93</td></tr></table>"
        # A narrow column of short numbers in rows that a long neighbour makes tall is not squeezed.
        "<table><tr><td style='width:1px'>8</td><td>" + "a cell long enough to wrap over several lines " * 4
        + "</td></tr></table>"
        "<figure><img src='_images/plot.png'><figcaption>Fig. 1 A plot.</figcaption></figure>"
        "<figure><img src='_images/legend-ok.png' style='max-width:100%'><figcaption>Fig. 2 A legend."
        "</figcaption></figure>"
        "<a href='good.html#top'>top</a></article></body></html>")
    long_equation = " + ".join(f"x_{{{k}}}^2" for k in range(60))
    (html / "bad.html").write_text(
        f"<html><head>{head}</head><body><article class='bd-article'><h1>Bad</h1>"
        f"<div class='math notranslate nohighlight' id='equation-long'>\\[{long_equation}\\]</div>"
        "<div class='math notranslate nohighlight'>\\[\\frac{a}{b\\]</div>"
        "<table><tr><td>the paper's MoE, trained by the locality and load-balancing losses until termination</td>"
        "<td style='width: 1px'>fine tuning on its own samples</td>" + "<td>a long explanation of what this column holds</td>" * 4
        + "</tr></table>"
        # SEED's table as it was: a column of code squeezed to a few characters per line.
        "<table id='squeezed'><tr><th>method</th><th>value</th><th>what it does</th></tr><tr><td>SEED</td>"
        "<td style='width:1px'><code>\"finetune_with_distillation\"</code></td>"
        "<td>picks the expert whose class distributions overlap least with the new task's, "
        "then fine-tunes only that expert on the task, with the others frozen</td></tr></table>"
        "<figure><img src='_images/legend-small.png' style='max-width:100%'><figcaption>Fig. 3 Small."
        "</figcaption></figure>"
        "<img src='_images/plot.png'><img src='_images/missing.png'>"
        "<p>Cited <span class='bibtex-citation'>[]</span>; see <a href='nowhere.html'>x</a> and "
        "<a href='good.html#gone'>y</a>; data in /home/runner/.cache/moecl.</p>"
        "</article></body></html>")
    return html


def test_checker_in_chromium_on_a_tiny_site(tmp_path):
    _require_browser()
    html = _tiny_site(tmp_path)
    artefacts = tmp_path / "shots"
    reports = browser_check.check_site(html, CHROMIUM, pages=["good.html", "bad.html"], artefacts=artefacts)
    by_view = {(r.page, r.theme): r for r in reports}
    assert set(by_view) == {(p, t) for p in ("good.html", "bad.html") for t in ("light", "dark")}
    for theme in ("light", "dark"):
        assert by_view["good.html", theme].problems == [], by_view["good.html", theme].problems
        problems = by_view["bad.html", theme].problems
        rules = {problem.split(":")[0] for problem in problems}
        assert {"overflow", "squeezed column", "legend", "math", "caption", "image", "request", "link",
                "citation", "text"} <= rules, problems
        text = "\n".join(problems)
        assert "equation #equation-long wider than its box" in text
        assert "characters per line #squeezed" in text, problems
        assert "legend-small.png" in text and "legend-ok.png" not in text
        assert "broken link" in text and "broken anchor" in text
        shot = artefacts / browser_check.screenshot_name("bad.html", theme)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (artefacts / browser_check.screenshot_name("good.html", "light")).exists()


def test_whole_book_in_chromium(tmp_path):
    """Every page of the built book, light and dark, passes every rule."""
    given = os.environ.get("MOECL_BROWSER_HTML")
    if MODE != "1" and not given:
        pytest.skip("builds the whole book (minutes): set MOECL_BROWSER=1 to run it")
    _require_browser()
    started = time.monotonic()
    if given:
        html = Path(given)
        assert browser_check.uses_local_mathjax(html), (
            f"{html} loads MathJax from a CDN: build it with `scripts/browser_check.py --build-only --out DIR`")
        browser_check.install_mathjax(html, MATHJAX)
    else:
        executed = os.environ.get("MOECL_EXECUTED_NOTEBOOKS")
        if executed:
            # nbval ran in this session: a chapter without an executed notebook failed there.
            # Executing the whole book again would double the run (.ci/run's 20 minutes) and fail too.
            missing = browser_check.missing_executed(Path(executed))
            if missing:
                pytest.fail(f"no executed notebook of {', '.join(missing)}: they failed (or did not run) under "
                            "nbval in this session; the browser check renders the executed chapters")
        html = browser_check.build_book(tmp_path / "book", MATHJAX, log=tmp_path / "build.log",
                                        executed=Path(executed) if executed else None)
    built = time.monotonic()
    artefacts = Path(os.environ.get("MOECL_BROWSER_ARTEFACTS", ROOT / "_build" / "browser"))
    reports = browser_check.check_site(html, CHROMIUM, artefacts=artefacts)
    print(f"\nbrowser check: build {built - started:.0f} s, {len(reports)} page views in {time.monotonic() - built:.0f} s")
    print("\n".join(browser_check.summary_lines(reports)))
    pages = {r.page for r in reports}
    assert {"book/intro.html", "book/setting.html", "book/bibliography.html"} <= pages
    failures = [f"{r.page} ({r.theme}): {problem}" for r in reports for problem in r.problems]
    assert not failures, "\n".join(failures)
    # The pages really carry rendered math, captioned figures and resolved citations.
    setting = next(r for r in reports if r.page == "book/setting.html")
    assert setting.probe["rendered"] >= 20
    assert sum(len(r.probe["figures"]) for r in reports) >= 40
    assert sum(len(r.probe["citations"]) for r in reports) >= 10


def test_missing_executed_names_the_chapters_without_a_notebook(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "setting.ipynb").write_text("{}")
    missing = browser_check.missing_executed(tmp_path)
    assert "book/setting" not in missing and "book/gate" in missing
    assert "book/notation" not in missing and "book/bibliography" not in missing  # no code cells
