"""scripts/book_config.py: the configuration of a build, for a local build and for the Pages workflow."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("book_config", ROOT / "scripts" / "book_config.py")
book_config = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_config)


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_a_local_build_hides_the_buttons_that_would_point_at_the_placeholder(config):
    local = book_config.build_config(config)
    assert all(local["html"][button] is False for button in book_config.BUTTONS)
    assert local["launch_buttons"]["binderhub_url"] == ""
    assert "buttons are hidden" in local["html"]["extra_footer"]
    assert local["repository"]["url"] == config["repository"]["url"]  # the placeholder, unused
    assert all(config["html"][button] is True for button in book_config.BUTTONS)  # the input is untouched


def test_the_pages_build_points_the_buttons_at_its_repository_and_links_the_pdf(config):
    pages = book_config.build_config(config, "someone/moe-book", "https://someone.github.io/moe-book/moecl-book.pdf")
    assert pages["repository"]["url"] == "https://github.com/someone/moe-book"
    assert all(pages["html"][button] is True for button in book_config.BUTTONS)
    assert pages["launch_buttons"]["binderhub_url"] == config["launch_buttons"]["binderhub_url"]
    assert pages["html"]["extra_footer"] == ('<p>The whole book as one PDF: <a href="https://someone.github.io/moe-book/'
                                             'moecl-book.pdf">moecl-book.pdf</a>.</p>')
    for key in ("execute", "sphinx", "parse", "bibtex_bibfiles", "latex"):
        assert pages[key] == config[key]


@pytest.mark.parametrize("repository, pdf_url, message", [
    ("someone", None, "not OWNER/NAME"),
    ("a/b/c", None, "not OWNER/NAME"),
    ("someone/book", "javascript:alert(1)", "not the address of a .pdf"),
])
def test_bad_settings_are_refused_by_name(config, repository, pdf_url, message):
    with pytest.raises(ValueError, match=message):
        book_config.build_config(config, repository, pdf_url)


def test_the_command_writes_the_file_and_refuses_in_one_line(tmp_path):
    out = tmp_path / "c.yml"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "book_config.py"), "--out", str(out),
                    "--repository", "someone/moe-book"], check=True, capture_output=True)
    assert yaml.safe_load(out.read_text())["repository"]["url"] == "https://github.com/someone/moe-book"
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "book_config.py"), "--out", str(out),
                          "--repository", "nobody"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "book_config: repository 'nobody' is not OWNER/NAME"


def test_book_sh_builds_with_it_and_the_pages_workflow_passes_the_repository():
    script = (ROOT / "scripts" / "book.sh").read_text()
    assert "book_config.py --out _build/_config.build.yml" in script
    assert '--repository "${MOECL_REPOSITORY:-${GITHUB_REPOSITORY:-}}"' in script
    assert "--config _build/_config.build.yml" in script and "--builder pdflatex" in script
    pages = (ROOT / ".github" / "workflows" / "pages.yml").read_text()
    assert "bash scripts/book.sh --pdf" in pages and "MOECL_PDF_URL" in pages
