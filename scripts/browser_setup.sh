#!/usr/bin/env bash
# Install what tests/test_browser.py needs: a headless Chromium and MathJax 3.
#   * Chromium: the Debian packages chromium and chromium-driver (apt-get), unless a
#     chromium / google-chrome binary is already on PATH (GitHub's runners have Chrome).
#   * MathJax 3: the npm package mathjax@3 into $MOECL_CACHE/mathjax (default
#     ~/.cache/moecl/mathjax); the test build serves it from _static/mathjax, since
#     these machines reach no CDN.
# Idempotent: a second run only checks. Needs root (or sudo) for apt-get, and npm.
set -euo pipefail
CACHE="${MOECL_CACHE:-$HOME/.cache/moecl}"

have_browser() {
    for name in chromium chromium-browser google-chrome google-chrome-stable; do
        command -v "$name" >/dev/null 2>&1 && return 0
    done
    return 1
}

if ! have_browser; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "browser_setup: installing chromium and chromium-driver (apt-get)" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        chromium chromium-driver >/dev/null
fi

if [ ! -f "$CACHE/mathjax/node_modules/mathjax/es5/tex-mml-chtml.js" ]; then
    if ! command -v npm >/dev/null 2>&1; then
        echo "browser_setup: npm not found; install Node.js (Debian package npm)" >&2
        exit 1
    fi
    echo "browser_setup: installing mathjax@3 from npm into $CACHE/mathjax" >&2
    mkdir -p "$CACHE/mathjax"
    npm install --prefix "$CACHE/mathjax" --no-audit --no-fund --silent mathjax@3
fi
echo "browser_setup: ok ($(command -v chromium || command -v chromium-browser || command -v google-chrome || command -v google-chrome-stable); mathjax in $CACHE/mathjax)" >&2
