#!/usr/bin/env bash
# Build and execute the whole book into _build/html (CPU, no downloads).
# Warnings are errors (-W): a failing cell or a broken reference fails the build.
# Execution is cached (_config.yml: execute_notebooks: cache, in _build/.jupyter_cache):
# scripts/book_cache.py re-executes exactly the chapters whose inputs changed (all of them
# when moecl/, results/ or MOECL_BOOK_SEED changed; the data-reading chapters when the data
# directory did). A clean build: `rm -rf _build && bash scripts/book.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python scripts/book_cache.py prepare
# No MPLBACKEND here: with Agg forced the kernels would not capture figures.
.venv/bin/jupyter-book build . -W --keep-going "$@"
.venv/bin/python scripts/book_cache.py commit
