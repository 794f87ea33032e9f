"""Browser check of the rendered book: what a reader sees, in headless Chromium (Playwright).

Builds the book with a local MathJax (npm ``mathjax@3``: no CDN is reached), serves the
HTML on 127.0.0.1 and loads every page with Playwright's Python API driving the system
Chromium (Debian package ``chromium``; ``scripts/browser_setup.sh``), in the light and the
dark theme, at 1280 x 900. A page fails when (`PROBE`, `page_problems`):

* **overflow**: the content of a displayed equation (the ``mjx-container``, the inner box
  that clips, not the outer ``div.math`` that holds the number), of a visible code block
  or output (``pre``) or of a table is wider than its box (``scrollWidth > clientWidth``);
* **squeezed column**: a table cell narrower than `MIN_COLUMN_CHARS` characters whose
  own text wraps onto more than one line (a narrow cell of one short number in a row made
  tall by its neighbours is not squeezed);
* **math**: a MathJax error (``mjx-merror``), a math element MathJax did not render, or
  raw TeX left in the visible text;
* **caption**: a figure image (``_images/``) outside a ``<figure>`` with a caption;
* **link**: an internal link to a page that does not exist or an anchor that no element
  of that page carries;
* **citation**: a citation that did not resolve (sphinxcontrib-bibtex leaves the key or
  a ``?`` in place of the reference, or a link into nothing);
* **image**, **request**: an image that did not load or a same-origin request that failed;
* **text**: an unresolved cross-reference role, a Python traceback or an absolute
  filesystem path in the visible text.

* **legend**: a figure whose smallest legend text, as displayed, is below `MIN_LEGEND_PX`
  CSS pixels. Legends live inside the PNG images, where the DOM cannot measure them:
  `moecl.plotting.use_book_style` writes the smallest legend text size (in pixels of the
  PNG) into each PNG a chapter draws, and the displayed size is that times the image's
  displayed width over its natural width.

A failing page is photographed (whole page, and each overflowing element) into the
artefacts folder.

    .venv/bin/python scripts/browser_check.py                  # build into a temp dir, check
    .venv/bin/python scripts/browser_check.py --html DIR       # check an existing build
    .venv/bin/python scripts/browser_check.py --build-only --out DIR
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MATHJAX = Path(os.environ.get("MOECL_CACHE", Path.home() / ".cache" / "moecl")) / "mathjax"
MATHJAX_SCRIPT = "tex-mml-chtml.js"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
VIEWPORT = {"width": 1280, "height": 900}
THEMES = ("light", "dark")
#: A table column must hold at least this many characters per line.
MIN_COLUMN_CHARS = 4
#: Smallest legend text a reader is shown, in CSS pixels (8 pt at the figures' 100 dpi is 11 px).
MIN_LEGEND_PX = 10.0
#: The PNG text chunk moecl.plotting writes (moecl.plotting.LEGEND_PX_KEY).
LEGEND_PX_KEY = "moecl:legend-min-px"
#: Pixels of overflow tolerated (sub-pixel rounding).
SLACK_PX = 1

RAW_TEX = r"\\[A-Za-z]+|\\\(|\\\[|\$\$"
RAW_REFERENCE = (r"\{(?:eq|numref|ref|doc|prf:ref|cite(?::[a-z]+)?|glue(?::[a-z]+)?|term|download)\}"
                 r"|\beq-[a-z0-9]+(?:-[a-z0-9]+)*\b")
ABSOLUTE_PATH = (r"(?<![\w.:/~-])/(?:home|root|tmp|usr|var|opt|work|mnt|srv|private|Users|runner|github)/[\w.@-]+"
                 r"|\b[A-Z]:\\[\w.]")
TRACEBACK = r"Traceback \(most recent call last\)|\b[A-Z][A-Za-z]*(?:Error|Exception): "


def find_chromium() -> str | None:
    """Path of a Chromium binary: $MOECL_CHROMIUM, else the first of CHROMIUM_NAMES on PATH."""
    given = os.environ.get("MOECL_CHROMIUM")
    if given:
        return given if Path(given).is_file() else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def find_mathjax() -> Path | None:
    """Directory holding MathJax 3's ``tex-mml-chtml.js``: $MOECL_MATHJAX, or browser_setup.sh's npm install."""
    candidates = [Path(os.environ["MOECL_MATHJAX"])] if os.environ.get("MOECL_MATHJAX") else []
    candidates += [DEFAULT_MATHJAX / "node_modules" / "mathjax" / "es5", ROOT / "node_modules" / "mathjax" / "es5"]
    for path in candidates:
        if (path / MATHJAX_SCRIPT).is_file():
            return path
        if (path / "es5" / MATHJAX_SCRIPT).is_file():
            return path / "es5"
    return None


def have_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- building


def book_stems() -> list[str]:
    """The book's pages in the order of _toc.yml (``book/intro``, ...)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [toc["root"]] + [chapter["file"] for part in toc.get("parts", []) for chapter in part["chapters"]]


def missing_executed(executed: Path) -> list[str]:
    """The chapters with code that have no executed notebook in ``executed`` (conftest.py
    writes one only when every code cell of the chapter passed under nbval)."""
    return [stem for stem in book_stems() if not (Path(executed) / f"{stem}.ipynb").is_file()
            and "{code-cell}" in (ROOT / f"{stem}.md").read_text()]


def executed_sources(executed: Path, out_dir: Path) -> Path | None:
    """A copy of the book's sources whose chapters are the executed notebooks in ``executed``
    (``book/<chapter>.ipynb``, written by the test session: conftest.py). None when a
    chapter with code has no executed notebook."""
    stems = book_stems()
    source = Path(out_dir) / "source"
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(ROOT / "book", source / "book", ignore=shutil.ignore_patterns("*.md", "*.ipynb", "_build"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, source / name)
    if (ROOT / "_static").is_dir():
        shutil.copytree(ROOT / "_static", source / "_static")
    for stem in stems:
        notebook, page = Path(executed) / f"{stem}.ipynb", ROOT / f"{stem}.md"
        if notebook.is_file():
            shutil.copy(notebook, source / f"{stem}.ipynb")
        elif "{code-cell}" in page.read_text():
            return None
        else:
            shutil.copy(page, source / f"{stem}.md")
    return source


def build_book(out_dir: Path, mathjax: Path, log=None, toc: Path | None = None, executed: Path | None = None,
               root: Path = ROOT, execute: str = "force") -> Path:
    """Build the book into ``out_dir/_build/html`` with MathJax served from ``_static/mathjax``.

    The repository's ``_config.yml`` is copied with Sphinx's ``mathjax_path`` pointing at
    the local copy (the published book keeps the CDN) and ``execute_notebooks`` set to
    ``execute`` (``off``: the math, tables and links without outputs, in seconds); with
    ``executed`` the chapters are nbval's executed notebooks, not executed again.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((root / "_config.yml").read_text())
    config.setdefault("sphinx", {}).setdefault("config", {})["mathjax_path"] = f"mathjax/{MATHJAX_SCRIPT}"
    config.setdefault("execute", {})["execute_notebooks"] = execute
    config["execute"].pop("cache", None)  # never the repository's cache: its invalidation is book.sh's
    source = executed_sources(executed, out_dir) if executed is not None else None
    if source is not None:
        root = source
        config["execute"]["execute_notebooks"] = "off"
    config_path = out_dir / "_config.browser.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(root),
               "--config", str(config_path), "--path-output", str(out_dir), "-W", "--keep-going"]
    if toc is not None:
        command += ["--toc", str(toc)]
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}  # keep inline figures
    result = subprocess.run(command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if log is not None:
        Path(log).write_text(result.stdout)
    if result.returncode != 0:
        raise RuntimeError(f"book build failed ({' '.join(command)}):\n{result.stdout[-4000:]}")
    html_dir = out_dir / "_build" / "html"
    install_mathjax(html_dir, mathjax)
    return html_dir


def install_mathjax(html_dir: Path, mathjax: Path) -> None:
    """Copy MathJax's es5 tree to ``html_dir/_static/mathjax`` (what mathjax_path points at)."""
    target = Path(html_dir) / "_static" / "mathjax"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(mathjax, target)


MATHJAX_SRC = re.compile(r'<script[^>]*\ssrc="([^"]*mathjax[^"]*)"', re.IGNORECASE)
REFRESH = re.compile(r'<meta[^>]+http-equiv="refresh"[^>]+url=([^"]+)"', re.IGNORECASE)
IDS = re.compile(r"""\sid=["']([^"']+)["']""")


def html_pages(html_dir: Path) -> list[Path]:
    """Every page of the site (relative paths), not the copies under _static, _sources or _images."""
    skip = ("_static", "_sources", "_images", "_downloads")
    return sorted(p.relative_to(html_dir) for p in html_dir.rglob("*.html") if p.relative_to(html_dir).parts[0] not in skip)


def redirect_target(path: Path) -> str | None:
    match = REFRESH.search(path.read_text(errors="replace"))
    return match.group(1).strip() if match else None


def uses_local_mathjax(html_dir: Path) -> bool:
    """Whether every page that loads MathJax loads it from ``_static/mathjax`` (a build of `build_book`)."""
    sources = [src for page in html_pages(html_dir) for src in MATHJAX_SRC.findall((html_dir / page).read_text(errors="replace"))]
    return bool(sources) and all(f"_static/mathjax/{MATHJAX_SCRIPT}" in src for src in sources)


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@dataclass
class Server:
    """A static file server for ``directory`` on 127.0.0.1 (a free port), in a thread."""

    directory: Path
    httpd: http.server.ThreadingHTTPServer = field(init=False)

    def __enter__(self) -> "Server":
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(self.directory)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


# --------------------------------------------------------------------------- the probe

#: Runs in the page once MathJax has typeset it; returns what `page_problems` judges.
PROBE = r"""
(minChars) => {
  const shown = (el) => el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
    && el.getBoundingClientRect().height > 0;
  const text = (el) => (el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 80);
  const where = (el) => { const box = el.closest('[id]'); return box ? '#' + box.id : ''; };
  const article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
  const overflow = [];
  const boxes = [
    ['equation', 'mjx-container[display="true"]'], ['code', 'pre'], ['table', 'table'],
  ];
  for (const [kind, selector] of boxes) {
    for (const el of article.querySelectorAll(selector)) {
      if (!shown(el)) continue;
      // A table's own box is its scrolling container when it has one.
      const box = kind === 'table' && el.parentElement && getComputedStyle(el.parentElement).overflowX !== 'visible'
        ? el.parentElement : el;
      const excess = kind === 'table' ? el.scrollWidth - box.clientWidth : el.scrollWidth - el.clientWidth;
      if (excess > 1) overflow.push({kind, excess, where: where(el), text: text(el), index: overflow.length});
      if (excess > 1) el.setAttribute('data-moecl-overflow', String(overflow.length - 1));
    }
  }
  const squeezed = [];
  for (const cell of article.querySelectorAll('td, th')) {
    if (!shown(cell)) continue;
    const style = getComputedStyle(cell);
    const width = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const chars = width / (0.55 * parseFloat(style.fontSize));
    if (chars >= minChars) continue;
    // The lines the cell's own text is broken into (not the row's height, which a taller
    // neighbour sets): the distinct tops of its text fragments (math has no text nodes).
    const tops = [];
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (!node.textContent.trim() || node.parentElement.closest('mjx-container')) continue;
      const range = document.createRange();
      range.selectNodeContents(node);
      for (const rect of range.getClientRects()) if (rect.width > 0) tops.push(rect.top);
    }
    tops.sort((a, b) => a - b);
    let lines = tops.length ? 1 : 0;
    for (let k = 1; k < tops.length; k++) if (tops[k] - tops[k - 1] > 0.5 * parseFloat(style.fontSize)) lines++;
    if (lines > 1) squeezed.push({chars: Math.round(chars * 10) / 10, lines, where: where(cell), text: text(cell)});
  }
  const figures = [];
  for (const img of article.querySelectorAll('img')) {
    if (!img.src.includes('/_images/')) continue;
    const figure = img.closest('figure');
    const caption = figure && figure.querySelector('figcaption');
    figures.push({src: img.src, captioned: !!(caption && caption.innerText.trim()), where: where(img),
                  shown: img.clientWidth, natural: img.naturalWidth});
  }
  const images = [...document.images].filter(shown).map(img => ({src: img.src, ok: img.complete && img.naturalWidth > 0}));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  // sphinxcontrib-bibtex: a resolved citation is <span class="bibtex-citation">[<a href=...>Name, 2017</a>]</span>,
  // an unresolved one an empty "[]" (or the key with a "?").
  const citations = [...article.querySelectorAll('span.bibtex-citation')]
    .map(el => ({text: text(el), links: [...el.querySelectorAll('a[href]')].map(a => a.href)}));
  const clone = article.cloneNode(true);
  for (const el of clone.querySelectorAll('mjx-container, script, style, pre, code, .highlight, details:not([open]), .toggle-hidden')) el.remove();
  const mathElements = article.querySelectorAll('.math').length;
  return {
    theme: document.documentElement.dataset.theme || null,  // pydata-sphinx-theme sets it
    overflow, squeezed, figures, images, links, citations,
    mathjax: !!window.MathJax, mathElements,
    rendered: article.querySelectorAll('.math mjx-container, mjx-container').length,
    mathErrors: [...article.querySelectorAll('mjx-merror')].map(el => el.getAttribute('data-mjx-error') || text(el)),
    prose: clone.innerText || '',
  };
}
"""


@dataclass
class PageReport:
    page: str
    theme: str
    problems: list[str]
    probe: dict = field(default_factory=dict)


def _page_ids(path: Path, cache: dict) -> set[str] | None:
    if path not in cache:
        cache[path] = set(IDS.findall(path.read_text(errors="replace"))) if path.is_file() else None
    return cache[path]


def link_problems(links: list[str], origin: str, html_dir: Path, id_cache: dict) -> list[str]:
    """Internal links to a missing page or to an anchor no element of that page carries."""
    problems = []
    for link in sorted(set(links)):
        parsed = urllib.parse.urlsplit(link)
        if f"{parsed.scheme}://{parsed.netloc}" != origin:
            continue
        target = html_dir / urllib.parse.unquote(parsed.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        ids = _page_ids(target, id_cache)
        if ids is None:
            if not target.exists():
                problems.append(f"link: broken link {link}")
        elif parsed.fragment and urllib.parse.unquote(parsed.fragment) not in ids:
            problems.append(f"link: broken anchor {link}")
    return problems


def legend_pixels(png: Path) -> float | None:
    """The smallest legend text of a figure's PNG, in pixels of the image (None: no legend mark)."""
    from PIL import Image

    try:
        with Image.open(png) as image:
            value = getattr(image, "text", {}).get(LEGEND_PX_KEY)
    except (OSError, ValueError):
        return None
    return float(value) if value else None


def legend_problems(figures: list[dict], origin: str, html_dir: Path) -> list[str]:
    """Figures whose smallest legend text is shown below `MIN_LEGEND_PX` CSS pixels."""
    problems = []
    for figure in figures:
        parsed = urllib.parse.urlsplit(figure["src"])
        if f"{parsed.scheme}://{parsed.netloc}" != origin or not figure.get("natural"):
            continue
        pixels = legend_pixels(html_dir / urllib.parse.unquote(parsed.path).lstrip("/"))
        if pixels is None:
            continue
        shown = pixels * figure["shown"] / figure["natural"]
        if shown < MIN_LEGEND_PX:
            problems.append(f"legend: smallest legend text shown at {shown:.1f} px (< {MIN_LEGEND_PX:g} px) "
                            f"{figure['where']}: {parsed.path.rsplit('/', 1)[-1]}")
    return problems


def page_problems(probe: dict, failed: list[str], origin: str, html_dir: Path, id_cache: dict) -> list[str]:
    """What is wrong with a page, one line each (the rule first: overflow, math, ...)."""
    problems = [f"overflow: {o['kind']} {o['where']} wider than its box by {o['excess']} px: {o['text']!r}"
                for o in probe["overflow"]]
    problems += [f"squeezed column: {c['chars']} characters per line {c['where']}: {c['text']!r}" for c in probe["squeezed"]]
    if probe["mathElements"] and not probe["mathjax"]:
        problems.append("math: MathJax did not load")
    elif probe["rendered"] < probe["mathElements"]:
        problems.append(f"math: {probe['rendered']} MathJax outputs for {probe['mathElements']} math elements")
    problems += [f"math: MathJax error: {error}" for error in probe["mathErrors"]]
    problems += [f"caption: figure without a caption {f['where']}: {f['src'].rsplit('/', 1)[-1]}"
                 for f in probe["figures"] if not f["captioned"]]
    problems += legend_problems(probe["figures"], origin, html_dir)
    problems += [f"image: did not load: {image['src']}" for image in probe["images"] if not image["ok"]]
    problems += [f"request: {entry}" for entry in failed]
    problems += link_problems(probe["links"], origin, html_dir, id_cache)
    for citation in probe["citations"]:  # the links' targets are checked with every link
        if not citation["links"] or "?" in citation["text"]:
            problems.append(f"citation: unresolved {citation['text']!r}")
    prose = probe["prose"]
    for rule, pattern in (("text: raw TeX", RAW_TEX), ("text: raw cross-reference", RAW_REFERENCE),
                          ("text: traceback", TRACEBACK), ("text: absolute path", ABSOLUTE_PATH)):
        hits = sorted({m.group(0) for m in re.finditer(pattern, prose)})[:3]
        if hits:
            problems.append(f"{rule}: {hits}")
    return problems


def screenshot_name(page: str, theme: str = "light") -> str:
    """``book/setting.html``, dark -> ``book-setting-dark.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(page)).removesuffix(".html") + f"-{theme}.png"


def check_site(html_dir: Path, chromium: str, pages=None, artefacts: Path | None = None,
               themes=THEMES, timeout_ms: int = 60_000) -> list[PageReport]:
    """Load every page (``pages``: relative paths; default all) in each theme; photograph failures."""
    from playwright.sync_api import sync_playwright

    html_dir = Path(html_dir)
    pages = [str(p) for p in (pages if pages is not None else html_pages(html_dir))]
    pages = [p for p in pages if redirect_target(html_dir / p) is None]
    reports, id_cache = [], {}
    with Server(html_dir) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            for theme in themes:
                context = browser.new_context(viewport=VIEWPORT, color_scheme=theme)
                # pydata-sphinx-theme reads the reader's choice from localStorage before it paints.
                context.add_init_script(f"localStorage.setItem('theme', '{theme}'); localStorage.setItem('mode', '{theme}');")
                page = context.new_page()
                for name in pages:
                    failed: list[str] = []

                    def on_failed(request, failed=failed):
                        failed.append(f"failed {request.url}")

                    def on_response(response, failed=failed):
                        if (response.status >= 400 and response.url.startswith(server.origin)
                                and not response.url.endswith("favicon.ico")):
                            failed.append(f"{response.status} {response.url}")

                    page.on("requestfailed", on_failed)
                    page.on("response", on_response)
                    page.goto(f"{server.origin}/{name}", wait_until="load", timeout=timeout_ms)
                    page.evaluate("async () => { if (window.MathJax && MathJax.startup) await MathJax.startup.promise; "
                                  "await document.fonts.ready; }")
                    probe = page.evaluate(PROBE, MIN_COLUMN_CHARS)
                    page.remove_listener("requestfailed", on_failed)
                    page.remove_listener("response", on_response)
                    problems = page_problems(probe, failed, server.origin, html_dir, id_cache)
                    if probe["theme"] is not None and probe["theme"] != theme:
                        problems.append(f"theme: the page shows the {probe['theme']} theme, not {theme}")
                    if problems and artefacts is not None:
                        artefacts.mkdir(parents=True, exist_ok=True)
                        shot = artefacts / screenshot_name(name, theme)
                        page.screenshot(path=str(shot), full_page=True)
                        for item in probe["overflow"][:5]:
                            element = page.locator(f'[data-moecl-overflow="{item["index"]}"]').first
                            try:  # best effort: the whole-page screenshot is the artefact that counts
                                element.screenshot(path=str(shot.with_suffix(f".overflow{item['index']}.png")),
                                                   timeout=5000)
                            except Exception:  # noqa: BLE001 (an element Playwright deems unstable)
                                pass
                    reports.append(PageReport(name, theme, problems, probe))
                context.close()
        finally:
            browser.close()
    return reports


def summary_lines(reports: list[PageReport]) -> list[str]:
    lines = []
    for report in reports:
        probe = report.probe
        figures = probe.get("figures", [])
        lines.append(f"{'FAIL' if report.problems else 'ok  '} {report.page} ({report.theme}): "
                     f"{probe.get('rendered', 0)} formulas, {sum(f['captioned'] for f in figures)}/{len(figures)} figures captioned")
        lines += [f"     {problem}" for problem in report.problems]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, help="check this existing build instead of building")
    parser.add_argument("--out", type=Path, help="build into this directory (default: a temporary one)")
    parser.add_argument("--build-only", action="store_true", help="build with local MathJax and stop")
    parser.add_argument("--toc", type=Path, help="another table of contents (default: _toc.yml)")
    parser.add_argument("--execute", default="force", help="execute_notebooks for the build (off: no outputs, seconds)")
    parser.add_argument("--artefacts", type=Path, default=ROOT / "_build" / "browser",
                        help="folder for the screenshots of failing pages (default: _build/browser)")
    args = parser.parse_args(argv)
    chromium, mathjax = find_chromium(), find_mathjax()
    if mathjax is None:
        print("MathJax 3 not found: run scripts/browser_setup.sh (or set MOECL_MATHJAX)", file=sys.stderr)
        return 2
    started = time.monotonic()
    if args.html:
        html_dir = args.html
        if not uses_local_mathjax(html_dir):
            print(f"{html_dir} loads MathJax from a CDN: build it with `scripts/browser_check.py --build-only --out DIR`",
                  file=sys.stderr)
            return 2
        install_mathjax(html_dir, mathjax)
    else:
        out = args.out or Path(tempfile.mkdtemp(prefix="moecl-book-"))
        try:
            html_dir = build_book(out, mathjax, log=out / "build.log", toc=args.toc, execute=args.execute)
        except RuntimeError as error:
            print(f"{error}\n(the whole log: {out / 'build.log'})", file=sys.stderr)
            return 1
        print(f"built {html_dir} in {time.monotonic() - started:.0f} s")
    if args.build_only:
        return 0
    if chromium is None or not have_playwright():
        print("Chromium or Playwright not found: run scripts/browser_setup.sh", file=sys.stderr)
        return 2
    reports = check_site(html_dir, chromium, artefacts=args.artefacts)
    print("\n".join(summary_lines(reports)))
    bad = sum(bool(report.problems) for report in reports)
    print(f"{len(reports) - bad} page views passed, {bad} failed ({time.monotonic() - started:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
