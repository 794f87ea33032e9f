"""Real-browser check of the rendered book: every page in headless Chromium.

Builds the book with a local MathJax (the npm package ``mathjax@3``; these machines
reach no CDN), serves the HTML on 127.0.0.1, loads every page in headless Chromium
over the DevTools protocol (through ``--remote-debugging-pipe``: no driver, no extra
Python package) and reports, per page:

* math rendered: MathJax ran, every Sphinx math element holds an ``mjx-container``,
  and no raw TeX (``\\command``, ``\\(``, ``\\[``, ``$$``) is left in the visible text;
* every image loaded (``complete`` and ``naturalWidth > 0``);
* every same-origin request succeeded (no 404 for a script, style, font or image);
* every internal link points to an existing page and, with a ``#fragment``, to an
  existing id on that page;
* the book reads as a book (`reading_problems`): a page with code offers its
  notebook (``.ipynb``) for download; no display equation, table or code block wider
  than its column; no raw cross-reference (``{eq}``, an ``eq-...`` label),
  no "Traceback" or error output, no absolute filesystem path and no internal
  vocabulary (`INTERNAL_VOCABULARY`) in the text; every figure captioned and numbered;
  the share of the page's height taken by code input printed, and at most
  `CODE_SHARE_MAX` on the pages that must comply.

Which pages must pass which rule: the rules of `EVERY_PAGE` hold on every page except
the page/rule pairs of `EXEMPT` (today's known failures, with their counts: fix one,
then delete its entry); the rules of `CONVERTED` (captions, code share) hold on the
pages of `CONVERTED_PAGES` only, and a chapter joins that set once it is converted.
Problems a page is exempt from are still printed (as "known"), never hidden.
One screenshot per page (the whole page at half scale) goes to ``--screenshots``.

Usage (from the repository root)::

    .venv/bin/python scripts/browser_check.py                 # build into a temp dir, check
    .venv/bin/python scripts/browser_check.py --html DIR      # check an existing build
    .venv/bin/python scripts/browser_check.py --build-only --out DIR
    .venv/bin/python scripts/browser_check.py --html DIR --screenshots _build/browser

``tests/test_browser.py`` runs the same check under pytest. Needs the Debian package
``chromium`` and MathJax from npm; ``scripts/browser_setup.sh`` installs both.
"""

from __future__ import annotations

import argparse
import base64
import functools
import html.parser
import http.server
import json
import os
import re
import select
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
#: Where scripts/browser_setup.sh installs MathJax 3 from npm.
DEFAULT_MATHJAX = Path(os.environ.get("MOECL_CACHE", Path.home() / ".cache" / "moecl")) / "mathjax"
MATHJAX_SCRIPT = "tex-mml-chtml.js"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Flags from the issue, plus: no network beyond 127.0.0.1 (every other host fails at once).
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--window-size=1280,900",
)
RAW_TEX = r"\\[A-Za-z]+|\\\(|\\\[|\$\$"
#: Cross-reference syntax that reached the page unresolved: a role ({eq}`...`, {numref}...)
#: or a bare equation label such as "Eq. (eq-moe-rates)".
RAW_REFERENCE = r"\{(?:eq|numref|ref|doc|prf:ref|cite(?::[a-z]+)?|glue(?::[a-z]+)?|term|download)\}|\beq-[a-z0-9]+(?:-[a-z0-9]+)*\b"
#: An absolute filesystem path (a builder's folder leaking onto the page). Not a URL's
#: path (preceded by a host name) and not "~/.cache/moecl", the documented default.
ABSOLUTE_PATH = (r"(?<![\w.:/~-])/(?:home|root|tmp|usr|var|opt|work|mnt|srv|private|Users|runner|github)/[\w.@-]+"
                 r"|\b[A-Z]:\\[\w.]")
#: Words for the project's own machinery that a reader must not meet (regular expressions,
#: case-insensitive): say "quick live run" / "stored full run", cite the book's chapters.
INTERNAL_VOCABULARY = (
    r"\bCI[ -]scale\b",
    r"THEORY\.md",
    r"\bissues? #?\d+\b",
    r"\bproject's machines?\b",
    r"\bthese machines\b",
)
#: A Python error on the page.
TRACEBACK = r"Traceback \(most recent call last\)|\b[A-Z][A-Za-z]*(?:Error|Exception): "
#: The largest share of a page's height that visible code input may take (converted pages).
CODE_SHARE_MAX = 0.15
#: Rules that hold on every page (except the page/rule pairs of EXEMPT).
EVERY_PAGE = ("equation overflow", "table overflow", "code overflow", "raw reference", "traceback", "path",
              "vocabulary", "download")
#: Rules that hold on the pages of CONVERTED_PAGES only.
CONVERTED = ("caption", "code share")
#: Chapters converted to the reading form (figures captioned and numbered through
#: `mystnb: figure:` metadata, plumbing hidden): they must pass the CONVERTED rules.
#: The conversion of a chapter adds its page here.
CONVERTED_PAGES: frozenset[str] = frozenset({"book/intro.html", "book/bibliography.html", "book/notation.html",
                                             "book/setting.html", "book/gate.html", "book/router.html",
                                             "book/ablation.html", "book/synthetic.html", "book/regimes.html",
                                             "book/single_expert.html", "book/moe_theory.html", "book/sharing.html",
                                             "book/similarity.html",
                                             "book/drift.html", "book/strategies.html",
                                             "book/choices.html", "book/seed.html", "book/deep.html"})
#: Pages that may exceed CODE_SHARE_MAX because they show code on purpose and say so
#: on the page (reference pages).
CODE_SHARE_EXCUSED: frozenset[str] = frozenset()
#: Known failures of EVERY_PAGE rules, page by page, with what was measured when they
#: were listed: the check prints them as "known" and does not fail on them. Fix the
#: page, then delete its entry (the check says when an entry is no longer needed).
#: Surveyed on the whole book built from its working tree with the data sets present
#: (a "code" block is a Markdown code block, "code input" a cell's source, "code
#: output" its printed output; "lines" counts the lines running past the column).
EXEMPT: dict[str, dict[str, str]] = {
}


# --------------------------------------------------------------------------- finding tools


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
    """Directory holding MathJax 3's ``tex-mml-chtml.js``: $MOECL_MATHJAX, or the npm install of browser_setup.sh."""
    candidates = []
    if os.environ.get("MOECL_MATHJAX"):
        candidates.append(Path(os.environ["MOECL_MATHJAX"]))
    candidates += [
        DEFAULT_MATHJAX / "node_modules" / "mathjax" / "es5",
        ROOT / "node_modules" / "mathjax" / "es5",
    ]
    for path in candidates:
        if (path / MATHJAX_SCRIPT).is_file():
            return path
        if (path / "es5" / MATHJAX_SCRIPT).is_file():
            return path / "es5"
    return None


# --------------------------------------------------------------------------- building


def executed_sources(executed: Path, out_dir: Path) -> Path | None:
    """A copy of the book's sources whose chapters are the executed notebooks in ``executed``.

    ``executed`` holds ``book/<chapter>.ipynb`` as written by the test session
    (conftest.py: nbval's outputs of each chapter). Pages without code are copied as
    they are. Returns None when a chapter with code has no executed notebook.
    """
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    stems = [toc["root"]] + [chapter["file"] for part in toc.get("parts", []) for chapter in part["chapters"]]
    source = Path(out_dir) / "source"
    if source.exists():
        shutil.rmtree(source)
    shutil.copytree(ROOT / "book", source / "book", ignore=shutil.ignore_patterns("*.md", "*.ipynb", "_build"))
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, source / name)
    if (ROOT / "_static").is_dir():  # the book's own style sheet (jupyter-book adds _static/*.css)
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


def build_book(out_dir: Path, mathjax: Path, log=None, toc: Path | None = None, executed: Path | None = None) -> Path:
    """Build the book into ``out_dir/_build/html`` with MathJax served from ``_static/mathjax``.

    The repository's ``_config.yml`` is copied with one change, Sphinx's ``mathjax_path``
    (relative paths are relative to ``_static``), and passed to ``jupyter-book build
    --config``; the published book keeps the CDN. Then MathJax is copied in. With
    ``executed`` (see `executed_sources`) the book is built from the executed
    notebooks without running them again, when every chapter has one.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["mathjax_path"] = f"mathjax/{MATHJAX_SCRIPT}"
    root = ROOT
    source = executed_sources(executed, out_dir) if executed is not None else None
    if source is not None:
        root = source
        config.setdefault("execute", {})["execute_notebooks"] = "off"
    config_path = out_dir / "_config.browser.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(jupyter_book) if jupyter_book.exists() else "jupyter-book",
        "build", str(root), "--config", str(config_path), "--path-output", str(out_dir),
        "-W", "--keep-going",
    ]
    if toc is not None:
        command += ["--toc", str(toc)]
    # No MPLBACKEND: with MPLBACKEND=Agg the kernels draw no inline figures at all, and
    # the pages would have no figure to check.
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
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


# --------------------------------------------------------------------------- serving


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        pass


@dataclass
class Server:
    """A static file server for ``directory`` on 127.0.0.1 (a free port), in a thread."""

    directory: Path
    httpd: http.server.ThreadingHTTPServer = field(init=False)

    def __enter__(self) -> "Server":
        handler = functools.partial(_QuietHandler, directory=str(self.directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"


# --------------------------------------------------------------------------- the browser


class BrowserError(RuntimeError):
    pass


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4).

    Messages are JSON objects separated by NUL bytes. One page target is created and
    attached with ``flatten``; commands to it carry its ``sessionId``.
    """

    def __init__(self, binary: str, timeout: float = 60.0):
        self.binary, self.timeout = binary, timeout
        self.profile = tempfile.mkdtemp(prefix="moecl-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire_fds():  # in the child: its fd 3 reads commands, its fd 4 writes replies
            os.dup2(to_child_r, 100)
            os.dup2(from_child_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        self.process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            preexec_fn=wire_fds, pass_fds=(3, 4),  # kept open; every other fd is closed after wire_fds
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self.session = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    # -- transport
    def _send(self, message: dict) -> None:
        data = json.dumps(message).encode() + b"\0"
        while data:
            written = os.write(self._to_child, data)
            data = data[written:]

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (exit code {self.process.poll()})")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, timeout: float | None = None, **params) -> dict:
        """Send one command (to the page session once attached) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith("Target."):
            message["sessionId"] = self.session
        self._send(message)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_event(self, method: str, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for k, event in enumerate(self.events):
                if event["method"] == method:
                    return self.events.pop(k)
            reply = self._receive(deadline)
            if "method" in reply:
                self.events.append(reply)

    def evaluate(self, expression: str, timeout: float | None = None):
        result = self.call(
            "Runtime.evaluate", timeout=timeout, expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise BrowserError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self._send({"id": 0, "method": "Browser.close", "params": {}})
            self.process.wait(timeout=10)
        except Exception:  # the browser may already be gone
            pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Runs in each page after its load event; returns what the checks need.
PAGE_PROBE = r"""
(async () => {
  if (!document.body) return null;
  const deadline = Date.now() + 30000;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const mathNodes = () => [...document.querySelectorAll('.math')];
  // MathJax 3 loads its components asynchronously; wait for it to finish typesetting.
  const loadsMathJax = [...document.scripts].some((s) => /mathjax/i.test(s.src));
  while (loadsMathJax && !(window.MathJax && MathJax.startup && MathJax.startup.promise) && Date.now() < deadline)
    await sleep(50);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const images = [...document.images];
  await Promise.all(images.map((img) => img.complete ? null :
    new Promise((r) => { img.addEventListener('load', r); img.addEventListener('error', r); setTimeout(r, 10000); })));
  const skip = new Set(['SCRIPT', 'STYLE', 'PRE', 'CODE', 'TEXTAREA', 'MJX-CONTAINER', 'MJX-ASSISTIVE-MML', 'NOSCRIPT']);
  const rawTex = [];
  const prose = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const pattern = new RegExp(__RAW_TEX__);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    let hidden = false;
    for (let el = node.parentElement; el; el = el.parentElement) {
      if (skip.has(el.tagName) || el.classList.contains('highlight')) { hidden = true; break; }
    }
    if (hidden) continue;
    const el = node.parentElement;
    if (!el || !el.getClientRects().length || getComputedStyle(el).visibility === 'hidden') continue;
    if (pattern.test(node.textContent)) rawTex.push(node.textContent.trim().slice(0, 120));
    if (el.closest('article')) prose.push(node.textContent);
  }
  // ---- the reading checks: measured inside the article (the text column)
  const article = document.querySelector('article.bd-article') || document.querySelector('article') ||
                  document.querySelector('main') || document.body;
  // Visible to a reader now: not inside a closed <details> (a hide-input cell) nor hidden by CSS.
  const shown = (el) => {
    const details = el.closest('details:not([open])');
    if (details && !el.closest('summary')) return false;
    if (el.checkVisibility && !el.checkVisibility({visibilityProperty: true, contentVisibilityAuto: true})) return false;
    return el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  };
  const snippet = (el) => (el.textContent || '').replace(/\s+/g, ' ').trim().slice(0, 80);
  const box = article.getBoundingClientRect();
  const style = getComputedStyle(article);
  const right = box.right - parseFloat(style.paddingRight || 0) + 2;
  const left = box.left + parseFloat(style.paddingLeft || 0) - 2;
  const overflow = [];
  for (const math of article.querySelectorAll('mjx-container[display="true"]')) {
    if (!shown(math)) continue;
    const inner = (math.querySelector('mjx-math') || math).getBoundingClientRect();
    const holder = math.closest('div.math') || math.parentElement;
    const frame = holder.getBoundingClientRect();
    const excess = Math.max(inner.right - Math.min(right, frame.right + 2), Math.max(left, frame.left - 2) - inner.left);
    if (excess > 0) {
      const label = holder.id || (holder.querySelector('.eqno') || {}).textContent || '';
      const tex = (math.querySelector('mjx-assistive-mml') || math).textContent.replace(/\s+/g, ' ').trim();
      overflow.push({kind: 'equation', excess: Math.round(excess), text: (label ? label + ': ' : '') + tex.slice(0, 60)});
    }
  }
  for (const table of article.querySelectorAll('table')) {
    if (!shown(table)) continue;
    const wrap = table.parentElement;
    const excess = Math.max(wrap.scrollWidth - wrap.clientWidth - 2, table.getBoundingClientRect().right - right);
    if (excess > 0) overflow.push({kind: 'table', excess: Math.round(excess), text: snippet(table.querySelector('tr') || table)});
  }
  for (const pre of article.querySelectorAll('pre')) {
    if (!shown(pre)) continue;
    const excess = Math.max(pre.scrollWidth - pre.clientWidth - 2, pre.getBoundingClientRect().right - right);
    if (excess > 0) {
      const kind = pre.closest('.cell_input') ? 'code input' : pre.closest('.cell_output') ? 'code output' : 'code';
      const lines = pre.textContent.split('\n');
      const long = lines.reduce((n, line) => n + (line.length * (pre.scrollWidth / Math.max(1, ...lines.map((l) => l.length))) > pre.clientWidth + 2 ? 1 : 0), 0);
      overflow.push({kind, excess: Math.round(excess), lines: long, text: snippet(pre)});
    }
  }
  const figures = [...article.querySelectorAll('img')]
    .filter((img) => shown(img) && (img.closest('.cell_output') || img.closest('figure')))
    .map((img) => {
      const figure = img.closest('figure');
      const caption = figure && figure.querySelector('figcaption');
      return {src: img.currentSrc || img.src, captioned: !!(caption && caption.textContent.trim()),
              numbered: !!(caption && caption.querySelector('.caption-number'))};
    });
  const codeHeight = [...article.querySelectorAll('.cell_input')].filter(shown)
    .reduce((sum, el) => sum + el.getBoundingClientRect().height, 0);
  const textWalker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const allText = [];
  for (let node = textWalker.nextNode(); node; node = textWalker.nextNode()) {
    const el = node.parentElement;
    if (el && (el.closest('script, style, mjx-assistive-mml'))) continue;
    allText.push(node.textContent);
  }
  return {
    title: document.title,
    mathjax: !!(window.MathJax && MathJax.version),
    mathjaxVersion: window.MathJax && MathJax.version || null,
    mathElements: mathNodes().length,
    unrendered: mathNodes().filter((el) => !el.querySelector('mjx-container')).map((el) => el.textContent.slice(0, 120)),
    containers: document.querySelectorAll('mjx-container').length,
    rawTex: rawTex.slice(0, 20),
    images: images.map((img) => ({src: img.currentSrc || img.src, ok: img.complete && img.naturalWidth > 0})),
    links: [...document.querySelectorAll('a[href]')].map((a) => a.href),
    overflow,
    figures,
    codeHeight: Math.round(codeHeight),
    pageHeight: Math.round(article.getBoundingClientRect().height),
    errorOutputs: article.querySelectorAll('.output.traceback, .output.error').length,
    hasCells: !!article.querySelector('.cell'),
    notebookDownload: [...document.querySelectorAll('a[href]')].some((a) => /\.ipynb$/.test(a.getAttribute('href'))),
    prose: prose.join(' ').replace(/\s+/g, ' '),
    text: allText.join(' ').replace(/\s+/g, ' '),
  };
})()
""".replace("__RAW_TEX__", json.dumps(RAW_TEX))


# --------------------------------------------------------------------------- checking


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


def page_ids(path: Path) -> set[str]:
    parser = _Ids()
    parser.feed(path.read_text(errors="replace"))
    return parser.ids


def html_pages(html_dir: Path) -> list[Path]:
    """Every page of the site (relative paths), not the copies under _static, _sources or _images."""
    skip = ("_static", "_sources", "_images", "_downloads")
    return sorted(
        path.relative_to(html_dir)
        for path in html_dir.rglob("*.html")
        if not path.relative_to(html_dir).parts[0] in skip
    )


REFRESH = re.compile(r'<meta[^>]+http-equiv="refresh"[^>]+url=([^"]+)"', re.IGNORECASE)


def redirect_target(path: Path) -> str | None:
    """The target of a redirect-only page (``<meta http-equiv="refresh">``), else None."""
    match = REFRESH.search(path.read_text(errors="replace"))
    return match.group(1).strip() if match else None


def uses_local_mathjax(html_dir: Path) -> bool:
    """Whether every page that loads MathJax loads it from ``_static/mathjax`` (a build of `build_book`)."""
    sources = []
    for page in html_pages(html_dir):
        text = (html_dir / page).read_text(errors="replace")
        sources += [src for src in MATHJAX_SRC.findall(text)]
    return bool(sources) and all(f"_static/mathjax/{MATHJAX_SCRIPT}" in src for src in sources)


MATHJAX_SRC = re.compile(r'<script[^>]*\ssrc="([^"]*mathjax[^"]*)"', re.IGNORECASE)


@dataclass
class PageReport:
    page: str
    probe: dict
    failed_requests: list[str]
    problems: list[str]
    #: Problems of rules this page is not held to yet (EXEMPT, or not in CONVERTED_PAGES).
    known: list[str] = field(default_factory=list)

    @property
    def code_share(self) -> float | None:
        return code_share(self.probe)


def screenshot_name(page: str) -> str:
    """File name of a page's screenshot: ``book/setting.html`` -> ``book-setting.png``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(page)).removesuffix(".html") + ".png"


def check_site(html_dir: Path, chromium: str, screenshot_page: str | None = None,
               screenshot_path: Path | None = None, pages: list[str] | None = None,
               screenshots: Path | None = None) -> list[PageReport]:
    """Load every page of ``html_dir`` in Chromium and return one report per page.

    With ``screenshots``, saves each page there (`screenshot_name`): the whole page at
    half scale (at most 16000 px of it); ``screenshot_path`` keeps its own shot of
    ``screenshot_page`` (its first displayed equation, at full scale).
    """
    html_dir = Path(html_dir)
    pages = pages or [str(p) for p in html_pages(html_dir)]
    reports: list[PageReport] = []
    id_cache: dict[Path, set[str]] = {}
    for page in list(pages):  # redirect-only pages (index.html): their target must exist
        target = redirect_target(html_dir / page)
        if target is not None:
            pages.remove(page)
            resolved = (html_dir / page).parent / urllib.parse.urlsplit(target).path
            problems = [] if resolved.is_file() else [f"redirect to a missing page: {target}"]
            reports.append(PageReport(page, {"redirect": target, "containers": 0, "images": []}, [], problems))
    with Server(html_dir) as server, Chromium(chromium) as browser:
        browser.call("Page.enable")
        browser.call("Network.enable")
        browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
        for page in pages:
            url = f"{server.origin}/{urllib.parse.quote(page)}"
            browser.events.clear()
            browser.call("Page.navigate", url=url)
            browser.wait_event("Page.loadEventFired")
            probe = browser.evaluate(PAGE_PROBE, timeout=60)
            failed = failed_requests(browser.events, server.origin)
            problems = page_problems(probe, failed, server.origin, html_dir, id_cache)
            known = []
            for rule, message in reading_problems(probe):
                (problems if held_to(page, rule) else known).append(f"{rule}: {message}")
            reports.append(PageReport(page, probe, failed, problems, known))
            if screenshots is not None:
                browser.evaluate("window.scrollTo(0, 0)")
                height = browser.evaluate("Math.ceil(document.documentElement.scrollHeight)") or 900
                shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                                    clip={"x": 0, "y": 0, "width": 1280, "height": min(height, 16000), "scale": 0.5})
                Path(screenshots).mkdir(parents=True, exist_ok=True)
                (Path(screenshots) / screenshot_name(page)).write_bytes(base64.b64decode(shot["data"]))
            if screenshot_page == page and screenshot_path is not None:
                # The first displayed equation in the middle of the picture.
                browser.evaluate("(() => { const m = document.querySelector('div.math');"
                                 " if (m) m.scrollIntoView({block: 'center'}); return !!m; })()")
                browser.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
                shot = browser.call("Page.captureScreenshot", format="png")
                Path(screenshot_path).parent.mkdir(parents=True, exist_ok=True)
                Path(screenshot_path).write_bytes(base64.b64decode(shot["data"]))
    return reports


def failed_requests(events: list[dict], origin: str) -> list[str]:
    """Same-origin requests that failed or answered with an HTTP error."""
    urls = {}
    failed = []
    for event in events:
        params = event.get("params", {})
        if event["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif event["method"] == "Network.responseReceived":
            response = params["response"]
            if response["url"] == f"{origin}/favicon.ico":  # asked for by the browser, not the page
                continue
            if response["url"].startswith(origin) and response["status"] >= 400:
                failed.append(f"{response['status']} {response['url']}")
        elif event["method"] == "Network.loadingFailed":
            url = urls.get(params["requestId"], "")
            if url.startswith(origin) and not params.get("canceled"):
                failed.append(f"{params.get('errorText')} {url}")
    return failed


def page_problems(probe: dict, failed: list[str], origin: str, html_dir: Path, id_cache: dict) -> list[str]:
    problems = []
    if probe["mathElements"]:
        if not probe["mathjax"]:
            problems.append(f"{probe['mathElements']} math elements but MathJax did not load")
        if probe["unrendered"]:
            problems.append(f"math not rendered by MathJax: {probe['unrendered'][:3]}")
        if probe["containers"] < probe["mathElements"]:
            problems.append(f"{probe['containers']} MathJax outputs for {probe['mathElements']} math elements")
    if probe["rawTex"]:
        problems.append(f"raw TeX visible: {probe['rawTex'][:3]}")
    for image in probe["images"]:
        if not image["ok"]:
            problems.append(f"image did not load: {image['src']}")
    problems += [f"request failed: {entry}" for entry in failed]
    for link in sorted(set(probe["links"])):
        if not link.startswith(origin + "/"):
            continue
        parsed = urllib.parse.urlsplit(link)
        path = urllib.parse.unquote(parsed.path).lstrip("/")
        target = html_dir / path
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken link: {link}")
            continue
        if parsed.fragment and target.suffix == ".html":
            if target not in id_cache:
                id_cache[target] = page_ids(target)
            if urllib.parse.unquote(parsed.fragment) not in id_cache[target]:
                problems.append(f"broken anchor: {link}")
    return problems


def code_share(probe: dict) -> float | None:
    """Share of the page's (article's) height taken by visible code input, or None without a height."""
    height = probe.get("pageHeight") or 0
    return probe.get("codeHeight", 0) / height if height > 0 else None


def held_to(page: str, rule: str) -> bool:
    """Whether ``page`` must pass ``rule`` now (see EVERY_PAGE, EXEMPT, CONVERTED_PAGES)."""
    if rule in CONVERTED:
        if rule == "code share" and page in CODE_SHARE_EXCUSED:
            return False
        return page in CONVERTED_PAGES
    return rule not in EXEMPT.get(page, {})


def _matches(pattern: str, text: str, flags=0, limit: int = 3) -> list[str]:
    found = []
    for match in re.finditer(pattern, text or "", flags):
        start, end = max(0, match.start() - 30), min(len(text), match.end() + 30)
        found.append("..." + text[start:end].strip() + "...")
        if len(found) == limit:
            break
    return found


def reading_problems(probe: dict) -> list[tuple[str, str]]:
    """``(rule, message)`` for each way the page fails to read as a book (rules: EVERY_PAGE + CONVERTED).

    Works on the probe of `PAGE_PROBE`; a probe without the reading fields (a redirect
    page, an old probe) has no reading problems.
    """
    if "overflow" not in probe:
        return []
    problems: list[tuple[str, str]] = []
    by_kind: dict[str, list[dict]] = {}
    for item in probe["overflow"]:
        by_kind.setdefault(item["kind"], []).append(item)
    for kind, items in sorted(by_kind.items()):
        worst = max(items, key=lambda item: item["excess"])
        lines = sum(item.get("lines", 0) for item in items)
        extra = f", {lines} lines" if lines else ""
        rule = {"equation": "equation overflow", "table": "table overflow"}.get(kind, "code overflow")
        problems.append((rule, f"{len(items)} {kind} block(s) wider than the column{extra} "
                               f"(worst by {worst['excess']} px: {worst['text']!r})"))
    raw = _matches(RAW_REFERENCE, probe.get("prose", ""))
    if raw:
        problems.append(("raw reference", f"unresolved cross-reference text: {raw}"))
    errors = _matches(TRACEBACK, probe.get("text", ""))
    if errors or probe.get("errorOutputs"):
        problems.append(("traceback", f"{probe.get('errorOutputs', 0)} error outputs; {errors}"))
    paths = _matches(ABSOLUTE_PATH, probe.get("text", ""))
    if paths:
        problems.append(("path", f"absolute filesystem path on the page: {paths}"))
    words = []
    for pattern in INTERNAL_VOCABULARY:
        hits = re.findall(pattern, probe.get("text", "") or "", re.IGNORECASE)
        if hits:
            example = _matches(pattern, probe.get("text", ""), re.IGNORECASE, limit=1)[0]
            words.append(f"{hits[0]!r} {len(hits)} times (e.g. {example!r})")
    if words:
        problems.append(("vocabulary", "internal vocabulary: " + "; ".join(words)))
    if probe.get("hasCells") and probe.get("notebookDownload") is False:
        problems.append(("download", "a page with code cells offers no .ipynb download"))
    figures = probe.get("figures", [])
    bad = [figure for figure in figures if not (figure["captioned"] and figure["numbered"])]
    if bad:
        problems.append(("caption", f"{len(bad)} of {len(figures)} figures without a numbered caption"))
    share = code_share(probe)
    if share is not None and share > CODE_SHARE_MAX:
        problems.append(("code share", f"code input is {share:.0%} of the page's height (at most {CODE_SHARE_MAX:.0%})"))
    return problems


def stale_exemptions(reports: list[PageReport]) -> list[str]:
    """EXEMPT entries whose page now passes the rule (delete them)."""
    failing = {(r.page, problem.split(":", 1)[0]) for r in reports for problem in r.known + r.problems}
    checked = {r.page for r in reports}
    return [f"{page}: {rule}" for page, rules in EXEMPT.items() for rule in rules
            if page in checked and (page, rule) not in failing]


def summary_lines(reports: list[PageReport]) -> list[str]:
    """One line per page: status, formulas, figures (captioned), code-input share; then its problems."""
    lines = []
    for report in reports:
        status = "ok" if not report.problems else "FAIL"
        probe = report.probe
        figures = probe.get("figures", [])
        captioned = sum(f["captioned"] and f["numbered"] for f in figures)
        share = report.code_share
        share_text = f", code input {share:.0%} of the height" if share is not None else ""
        lines.append(f"{status:4s} {report.page}: {probe.get('containers', 0)} formulas, {len(probe.get('images', []))} "
                     f"images, {captioned}/{len(figures)} figures captioned{share_text}")
        lines += [f"     {problem}" for problem in report.problems]
        lines += [f"     known: {problem}" for problem in report.known]
    return lines


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--html", type=Path, help="check this existing build instead of building")
    parser.add_argument("--out", type=Path, help="build into this directory (default: a temporary one)")
    parser.add_argument("--build-only", action="store_true", help="build with local MathJax and stop")
    parser.add_argument("--toc", type=Path, help="another table of contents (default: _toc.yml)")
    parser.add_argument("--screenshot", type=Path, default=ROOT / "_build" / "browser" / "setting.png")
    parser.add_argument("--screenshots", type=Path, default=ROOT / "_build" / "browser",
                        help="folder for one screenshot per page (default: _build/browser)")
    args = parser.parse_args(argv)
    chromium, mathjax = find_chromium(), find_mathjax()
    if mathjax is None:
        print("MathJax 3 not found: run scripts/browser_setup.sh (or set MOECL_MATHJAX)", file=sys.stderr)
        return 2
    started = time.monotonic()
    if args.html:
        html_dir = args.html
        if not uses_local_mathjax(html_dir):
            print(f"{html_dir} loads MathJax from a CDN, which this machine cannot reach: build it with "
                  "`scripts/browser_check.py --build-only --out DIR` and pass DIR/_build/html", file=sys.stderr)
            return 2
        install_mathjax(html_dir, mathjax)
    else:
        out = args.out or Path(tempfile.mkdtemp(prefix="moecl-book-"))
        try:
            html_dir = build_book(out, mathjax, log=out / "build.log", toc=args.toc)
        except RuntimeError as error:
            print(f"{error}\n(the whole log: {out / 'build.log'})", file=sys.stderr)
            return 1
        print(f"built {html_dir} in {time.monotonic() - started:.0f} s")
    if args.build_only:
        return 0
    if chromium is None:
        print("Chromium not found: run scripts/browser_setup.sh (or set MOECL_CHROMIUM)", file=sys.stderr)
        return 2
    reports = check_site(html_dir, chromium, "book/setting.html", args.screenshot, screenshots=args.screenshots)
    print("\n".join(summary_lines(reports)))
    for entry in stale_exemptions(reports):
        print(f"EXEMPT entry no longer needed (delete it): {entry}")
    bad = sum(bool(report.problems) for report in reports)
    print(f"{len(reports) - bad} pages passed, {bad} failed ({time.monotonic() - started:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
