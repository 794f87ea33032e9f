#!/usr/bin/env bash
# Build and execute the whole book into _build/html (CPU, no downloads).
#   bash scripts/book.sh          # the web pages: _build/html/index.html
#   bash scripts/book.sh --pdf    # the whole book as one PDF: _build/latex/moecl-book.pdf
#                                 # (needs XeLaTeX: apt-get install texlive-xetex texlive-latex-recommended
#                                 #  texlive-latex-extra texlive-fonts-recommended fonts-freefont-otf xindy latexmk)
# Warnings are errors (-W): a failing cell or a broken reference fails the build.
# Execution is cached (_config.yml: execute_notebooks: cache, in _build/.jupyter_cache):
# scripts/book_cache.py re-executes exactly the chapters whose inputs changed (all of them
# when moecl/, results/ or MOECL_BOOK_SEED changed; the data-reading chapters when the data
# directory did), so a PDF built after the pages executes nothing again. A clean build:
# `rm -rf _build && bash scripts/book.sh`.
# The configuration is _config.yml completed by scripts/book_config.py: the repository's
# buttons point at MOECL_REPOSITORY (else GitHub Actions' GITHUB_REPOSITORY), and are hidden
# in a local build where neither is set; MOECL_PDF_URL links the PDF from every page.
set -euo pipefail
cd "$(dirname "$0")/.."
builder=()
if [ "${1:-}" = "--pdf" ]; then
    shift
    for tool in xelatex latexmk; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "book: --pdf needs $tool (Debian: apt-get install texlive-xetex texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended fonts-freefont-otf xindy latexmk)" >&2
            exit 1
        fi
    done
    builder=(--builder pdflatex)
fi
bash scripts/install.sh
.venv/bin/python scripts/book_config.py --out _build/_config.build.yml \
    --repository "${MOECL_REPOSITORY:-${GITHUB_REPOSITORY:-}}" --pdf-url "${MOECL_PDF_URL:-}"
.venv/bin/python scripts/book_cache.py prepare
# No MPLBACKEND here: with Agg forced the kernels would not capture figures.
.venv/bin/jupyter-book build . -W --keep-going --config _build/_config.build.yml "${builder[@]}" "$@"
.venv/bin/python scripts/book_cache.py commit
if [ ${#builder[@]} -gt 0 ]; then
    echo "book: the PDF is _build/latex/moecl-book.pdf" >&2
fi
