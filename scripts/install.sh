#!/usr/bin/env bash
# Create .venv and install moecl with everything the book and the tests need.
# Idempotent: a second run only checks a stamp. Used by scripts/book.sh and scripts/test.sh.
#   PYTHON       interpreter to build the venv with (default: python3; needs 3.11+)
#   MOECL_TORCH  pip requirement for torch (default: torch==2.13.0, a CPU build on the
#                project's machines; elsewhere e.g. MOECL_TORCH="torch --index-url
#                https://download.pytorch.org/whl/cpu" for a CPU-only wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH="${MOECL_TORCH:-torch==2.13.0}"
VENV=.venv
STAMP="$VENV/.moecl-installed"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "install: '$PYTHON' not found; set PYTHON to a Python 3.11+ interpreter" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "install: $("$PYTHON" --version 2>&1) is too old; moecl needs Python 3.11+ (set PYTHON)" >&2
    exit 1
fi

wanted="$TORCH|$(cat pyproject.toml scripts/install.sh | cksum)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ] && [ -x "$VENV/bin/python" ]; then
    exit 0
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
echo "install: installing $TORCH and moecl[book,test] into $VENV (first run: about a minute)" >&2
# shellcheck disable=SC2086  # MOECL_TORCH may carry pip options
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $TORCH
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[book,test]"
echo "$wanted" > "$STAMP"
