"""Real-browser check of the rendered book (issue 6), with `scripts/browser_check.py`.

The whole-book test builds the book into a temporary directory with a local MathJax
(npm ``mathjax@3``; these machines reach no CDN), serves it on 127.0.0.1, loads every
page in headless Chromium and asserts, page by page: MathJax output present for every
math element and no raw TeX visible, every image loaded (``naturalWidth > 0``), no
same-origin request failed, no internal link or anchor broken. It saves a screenshot
of the setting chapter as an artefact (``_build/browser/setting.png``, or
``$MOECL_BROWSER_ARTEFACTS``).

Controls (environment):

* ``MOECL_BROWSER``: unset or ``auto`` (default): the checker's own tests run when
  Chromium and MathJax are installed (a few seconds) and skip with the reason
  otherwise; the whole-book test, which builds the whole book (from the chapters nbval
  executed earlier in the same session when it has them all, see conftest.py; else it
  executes every chapter again, several minutes), is skipped. ``1``: the whole-book test
  runs too, and a missing browser is a failure (for CI, after
  ``scripts/browser_setup.sh``). ``0``: every browser test is skipped.
* ``MOECL_BROWSER_HTML``: check this existing build instead of building (it must have
  been built by ``scripts/browser_check.py --build-only``, with the local MathJax);
  the whole-book test then runs in any mode but ``0``.

The checker's own tests, on a small hand-made site, show that each assertion can fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
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


def _require_browser():
    if MODE == "0":
        pytest.skip("MOECL_BROWSER=0")
    missing = []
    if CHROMIUM is None:
        missing.append("Chromium (Debian packages chromium, chromium-driver)")
    if MATHJAX is None:
        missing.append("MathJax 3 (npm package mathjax@3)")
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed: run `bash scripts/browser_setup.sh`"
    if MODE == "1":
        pytest.fail(f"MOECL_BROWSER=1 but {message}")
    pytest.skip(message)


# --------------------------------------------------------------------------- without a browser


def test_page_problems_reports_every_kind_of_failure(tmp_path):
    (tmp_path / "a.html").write_text('<p id="here">a</p>')
    origin = "http://127.0.0.1:1"
    probe = {
        "mathElements": 2,
        "mathjax": True,
        "unrendered": ["\\(x\\)"],
        "containers": 1,
        "rawTex": ["\\frac{1}{2}"],
        "images": [{"src": f"{origin}/missing.png", "ok": False}, {"src": f"{origin}/a.png", "ok": True}],
        "links": [f"{origin}/a.html#here", f"{origin}/a.html#nowhere", f"{origin}/b.html", "https://example.org/x"],
    }
    problems = browser_check.page_problems(probe, ["404 http://127.0.0.1:1/x.js"], origin, tmp_path, {})
    text = "\n".join(problems)
    assert "math not rendered" in text and "1 MathJax outputs for 2 math elements" in text
    assert "raw TeX visible" in text
    assert "image did not load: http://127.0.0.1:1/missing.png" in text
    assert "request failed: 404" in text
    assert "broken anchor: http://127.0.0.1:1/a.html#nowhere" in text
    assert "broken link: http://127.0.0.1:1/b.html" in text
    assert "a.html#here" not in text and "example.org" not in text  # good and external links pass
    assert len(problems) == 7


def test_page_problems_accepts_a_clean_page(tmp_path):
    (tmp_path / "a.html").write_text('<h1 id="top">a</h1>')
    probe = {"mathElements": 1, "mathjax": True, "unrendered": [], "containers": 1, "rawTex": [],
             "images": [{"src": "x", "ok": True}], "links": ["http://127.0.0.1:1/a.html#top"]}
    assert browser_check.page_problems(probe, [], "http://127.0.0.1:1", tmp_path, {}) == []


def test_raw_tex_pattern():
    import re

    pattern = re.compile(browser_check.RAW_TEX)
    for raw in ("\\sigma_0", "$$ x $$", "\\(x\\)", "\\[x\\]", "where \\lVert v \\rVert"):
        assert pattern.search(raw), raw
    for clean in ("sigma_0 = 0.1", "a $5 fee", "C:/path", "x < y"):
        assert not pattern.search(clean), clean


def test_redirect_pages_and_page_list(tmp_path):
    (tmp_path / "_static").mkdir()
    (tmp_path / "_static" / "x.html").write_text("static copy")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.html").write_text("<html><body>intro</body></html>")
    (tmp_path / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/intro.html" />')
    pages = [str(p) for p in browser_check.html_pages(tmp_path)]
    assert pages == ["book/intro.html", "index.html"]
    assert browser_check.redirect_target(tmp_path / "index.html") == "book/intro.html"
    assert browser_check.redirect_target(tmp_path / "book" / "intro.html") is None


# --------------------------------------------------------------------------- with a browser


def _tiny_site(root: Path) -> Path:
    """Two pages: good.html (math, an image, a link with an anchor) and bad.html (none of it works)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    html = root / "site"
    (html / "_static").mkdir(parents=True)
    browser_check.install_mathjax(html, MATHJAX)
    figure, axes = plt.subplots(figsize=(1, 1))
    axes.plot([0, 1], [0, 1])
    figure.savefig(html / "plot.png")
    plt.close(figure)
    head = '<script defer src="_static/mathjax/tex-mml-chtml.js"></script>'
    (html / "good.html").write_text(
        f"<html><head>{head}</head><body><h1 id='top'>Good</h1>"
        "<p>Inline <span class='math notranslate nohighlight'>\\(\\sigma_0^2\\)</span>.</p>"
        "<div class='math notranslate nohighlight'>\\[\\sum_n \\lVert w_n \\rVert^2\\]</div>"
        "<img src='plot.png' alt='plot'><a href='good.html#top'>top</a>"
        "<pre>code may show \\frac{a}{b}</pre></body></html>"
    )
    (html / "bad.html").write_text(
        "<html><head></head><body><p>Raw <span class='math'>\\(\\sigma_0\\)</span> and $$x$$.</p>"
        "<img src='missing.png' alt='gone'><a href='nowhere.html'>x</a><a href='good.html#gone'>y</a>"
        "</body></html>"
    )
    return html


def test_checker_in_chromium_on_a_tiny_site(tmp_path):
    _require_browser()
    html = _tiny_site(tmp_path)
    shot = tmp_path / "good.png"
    reports = {r.page: r for r in browser_check.check_site(html, CHROMIUM, "good.html", shot, ["good.html", "bad.html"])}
    good, bad = reports["good.html"], reports["bad.html"]
    assert good.problems == [], good.problems
    assert good.probe["mathjax"] and good.probe["containers"] == 2 == good.probe["mathElements"]
    assert good.probe["images"][0]["ok"]
    assert shot.stat().st_size > 1000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = "\n".join(bad.problems)
    assert "MathJax did not load" in text and "raw TeX visible" in text
    assert "image did not load" in text and "request failed: 404" in text
    assert "broken link" in text and "broken anchor" in text


def test_whole_book_in_chromium(tmp_path):
    """Every page of the built book renders its math, loads its images and has no broken link."""
    given = os.environ.get("MOECL_BROWSER_HTML")
    if MODE != "1" and not given:
        pytest.skip("builds the whole book (minutes): set MOECL_BROWSER=1 to run it")
    _require_browser()
    started = time.monotonic()
    if given:
        html = Path(given)
        assert browser_check.uses_local_mathjax(html), (
            f"{html} loads MathJax from a CDN: build it with `scripts/browser_check.py --build-only --out DIR`"
        )
        browser_check.install_mathjax(html, MATHJAX)
    else:
        # The chapters nbval executed in this session (conftest.py), if all of them were.
        executed = os.environ.get("MOECL_EXECUTED_NOTEBOOKS")
        html = browser_check.build_book(tmp_path / "book", MATHJAX, log=tmp_path / "build.log",
                                        executed=Path(executed) if executed else None)
    built = time.monotonic()
    artefacts = Path(os.environ.get("MOECL_BROWSER_ARTEFACTS", ROOT / "_build" / "browser"))
    shot = artefacts / "setting.png"
    reports = browser_check.check_site(html, CHROMIUM, "book/setting.html", shot)
    print(f"\nbrowser check: build {built - started:.0f} s, {len(reports)} pages in {time.monotonic() - built:.0f} s")
    pages = {r.page for r in reports}
    assert {"book/intro.html", "book/setting.html"} <= pages
    failures = {r.page: r.problems for r in reports if r.problems}
    assert not failures, "\n".join(f"{page}: {problems}" for page, problems in failures.items())
    # Theory pages really carry rendered math and figures, and the screenshot exists.
    setting = next(r for r in reports if r.page == "book/setting.html")
    assert setting.probe["containers"] >= 20
    assert shot.is_file() and shot.stat().st_size > 10_000
    # A chapter whose code draws with matplotlib shows at least one figure image (with
    # MPLBACKEND=Agg in the build environment the kernels display none, and this fails).
    for report in reports:
        source = ROOT / Path(report.page).with_suffix(".md")
        if source.is_file() and re.search(r"plt\.(subplots|figure)\(", source.read_text()):
            figures = [image for image in report.probe["images"] if "/_images/" in image["src"]]
            assert figures, f"{report.page}: its code draws figures, the page shows none"
