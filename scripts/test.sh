#!/usr/bin/env bash
# Run the whole test suite: unit tests in tests/ and every chapter in book/ under nbval.
# Chapters assert their claims in executed cells; outputs (figures, timings) are not
# compared (--nbval-lax). Extra arguments go to pytest, e.g. `bash scripts/test.sh -k theory`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# No MPLBACKEND=Agg: the chapters' kernels must keep the inline backend, so that the
# figures nbval collects reach the executed notebooks the browser check renders.
exec .venv/bin/python -m pytest --nbval-lax --nbval-current-env "$@"
