"""The configuration a build of the book uses: _config.yml, completed for where it is published.

_config.yml names a placeholder repository (its ``repository.url``). Its Binder,
source, edit and issue buttons would point nowhere, so a build is given a configuration
written from it (scripts/book.sh passes it to ``jupyter-book build --config``):

* with a repository (``--repository OWNER/NAME``; book.sh passes ``$MOECL_REPOSITORY``, else
  GitHub Actions' ``$GITHUB_REPOSITORY``, so the Pages workflow publishes the book with the
  repository it builds): ``repository.url`` is that repository's and the buttons stay;
* without one (a local build): the repository, issue and edit buttons and the Binder button
  are hidden, and the footer says why;
* ``--pdf-url URL``: the footer links the PDF of the whole book (the Pages workflow publishes
  it beside the pages, ``scripts/book.sh --pdf`` builds it).

    python scripts/book_config.py --out _build/_config.build.yml [--repository OWNER/NAME] [--pdf-url URL] [--no-execute]
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUTTONS = ("use_repository_button", "use_issues_button", "use_edit_page_button")
REPOSITORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}")


def build_config(config: dict, repository: str | None = None, pdf_url: str | None = None,
                 execute: bool = True) -> dict:
    """A copy of ``config`` (the parsed _config.yml) for a build published from ``repository``
    (``OWNER/NAME``; None: a local build), with the PDF at ``pdf_url`` linked from every page;
    ``execute=False``: no chapter is executed (the scheduled link check reads only the sources)."""
    config = yaml.safe_load(yaml.safe_dump(config))  # a deep copy
    if not execute:
        config.setdefault("execute", {})["execute_notebooks"] = "off"
    html_options = config.setdefault("html", {})
    footer = []
    if repository:
        if not REPOSITORY.fullmatch(repository):
            raise ValueError(f"repository {repository!r} is not OWNER/NAME")
        config.setdefault("repository", {})["url"] = f"https://github.com/{repository}"
    else:
        for button in BUTTONS:
            html_options[button] = False
        config.setdefault("launch_buttons", {})["binderhub_url"] = ""
        footer.append("A local build: the repository, issue, edit and Binder buttons are hidden, since no "
                      "repository is known (scripts/book.sh takes it from MOECL_REPOSITORY or GITHUB_REPOSITORY).")
    if pdf_url:
        if not re.match(r"^(https://|\.\./|/)?[\w./%-]+\.pdf$", pdf_url):
            raise ValueError(f"pdf_url {pdf_url!r} is not the address of a .pdf")
        footer.insert(0, f'The whole book as one PDF: <a href="{html.escape(pdf_url)}">{html.escape(pdf_url.rsplit("/", 1)[-1])}</a>.')
    if footer:
        html_options["extra_footer"] = "<p>" + " ".join(footer) + "</p>"
    return config


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the configuration")
    parser.add_argument("--repository", default="", help="OWNER/NAME of the GitHub repository (empty: a local build)")
    parser.add_argument("--pdf-url", default="", help="address of the book's PDF, linked from every page")
    parser.add_argument("--no-execute", action="store_true", help="execute no chapter (for the link check)")
    args = parser.parse_args(argv)
    try:
        config = build_config(yaml.safe_load((ROOT / "_config.yml").read_text()), args.repository or None,
                              args.pdf_url or None, execute=not args.no_execute)
    except ValueError as error:
        print(f"book_config: {error}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.out.with_suffix(".tmp")
    temporary.write_text("# Written by scripts/book_config.py from _config.yml; do not edit.\n"
                         + yaml.safe_dump(config, sort_keys=False))
    temporary.replace(args.out)
    print(f"book_config: {args.out} ({'repository ' + args.repository if args.repository else 'local build'})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
