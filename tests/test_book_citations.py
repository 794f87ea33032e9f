"""Every citation in the book goes through {cite} (sphinxcontrib-bibtex), never plain text.

A plain "Chaudhry et al. (2018)" is neither linked to the bibliography nor checked by the
build; the pattern below finds author-year citations written by hand in book/*.md.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_NAME = r"[A-Z][A-Za-z'\-]+"
_YEAR = r"(?:19|20)\d\d[a-z]?"
# "Name et al. (2018)", "Name et al., 2018", "Name and Name (2017)", "Name and Name, 2017",
# "(Name, 2017)", "Name (2017)" for a capitalised name that is not a sentence's first word.
AUTHOR_YEAR = re.compile(
    rf"{_NAME} et al\.?,? \(?{_YEAR}"
    rf"|{_NAME} (?:and|&) {_NAME},? \(?{_YEAR}"
    rf"|\({_NAME},? {_YEAR}\)"
    rf"|(?<=[a-z,;] ){_NAME} \({_YEAR}\)"
)
ROLE = re.compile(r"\{cite(?::[a-z]+)?\}`[^`]*`")


def plain_citations(text: str) -> list[str]:
    """The author-year citations in ``text`` outside {cite} roles."""
    return [match.group(0) for match in AUTHOR_YEAR.finditer(ROLE.sub("", text))]


@pytest.mark.parametrize("plain", [
    "average forgetting (Chaudhry et al., 2018)", "as Chaudhry et al. (2018) define", "Lopez-Paz and Ranzato (2017)",
    "backward transfer (Lopez-Paz and Ranzato, 2017)", "the metric (Chaudhry, 2018)", "as in Krizhevsky (2009)",
])
def test_the_pattern_finds_plain_citations(plain):
    assert plain_citations(plain) == [AUTHOR_YEAR.search(plain).group(0)]


@pytest.mark.parametrize("fine", [
    "backward transfer {cite}`lopez2017gradient`", "as {cite:t}`chaudhry2018riemannian` define",
    "ICLR 2025, arXiv:2406.16437", "Table 2 (2025 runs)", "Fig. (3) and Eq. (12)", "In 2018 the paper",
])
def test_the_pattern_leaves_other_text_alone(fine):
    assert plain_citations(fine) == []


def test_no_plain_citation_in_the_book():
    found = {path.name: plain_citations(path.read_text(encoding="utf-8")) for path in sorted(ROOT.glob("book/*.md"))}
    found = {name: hits for name, hits in found.items() if hits}
    assert not found, f"cite these with {{cite}}`key` (book/references.bib): {found}"


def test_every_cited_key_is_in_the_bibliography():
    bib = (ROOT / "book" / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,\s]+),", bib, re.M))
    cited = set()
    for path in ROOT.glob("book/*.md"):
        for role in ROLE.findall(path.read_text(encoding="utf-8")):
            cited |= {key.strip() for key in role.split("`")[1].split(",")}
    assert cited - keys == set(), f"cited but not in book/references.bib: {sorted(cited - keys)}"
    assert {"chaudhry2018riemannian", "lopez2017gradient"} <= cited
