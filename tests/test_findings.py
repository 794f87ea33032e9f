"""The findings page (book/findings.md) pastes only numbers that its chapters glue.

Every ``{glue:text}`chapter.md::key:s``` of the page must name a chapter that exists and
glues the key (``glue("key", ...)``, or the key passed to a helper of the chapter that
glues it). A missing key fails the book build; this finds it without building.
"""

import pathlib
import re

BOOK = pathlib.Path(__file__).resolve().parents[1] / "book"
REFERENCE = re.compile(r"\{glue:text\}`([\w.]+)::([\w-]+):s`")


def references():
    return REFERENCE.findall((BOOK / "findings.md").read_text())


def test_the_page_has_a_row_per_claim():
    assert len(references()) >= 18


def test_every_pasted_key_is_glued_by_its_chapter():
    missing = []
    for chapter, key in references():
        path = BOOK / chapter
        if not path.exists() or not re.search(rf"""["']{re.escape(key)}["']""", path.read_text()):
            missing.append(f"{chapter}::{key}")
    assert not missing, f"keys pasted by book/findings.md but not glued: {missing}"


def test_the_introduction_points_to_the_page():
    assert "chap-findings" in (BOOK / "intro.md").read_text()
