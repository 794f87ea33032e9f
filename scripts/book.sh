#!/usr/bin/env bash
# Build and execute the whole book into _build/html (CPU, no downloads).
# Warnings are errors (-W): a failing cell or a broken reference fails the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# No MPLBACKEND here: with Agg forced the kernels would not capture figures.
exec .venv/bin/jupyter-book build . -W --keep-going "$@"
