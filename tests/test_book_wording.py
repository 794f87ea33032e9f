"""No words left from how the book was made: a reader is told what they can do instead."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEFTOVERS = [
    r"not available to the book",
    r"No GPU (?:was available|has run)",
    r"when this section was written",
]


@pytest.mark.parametrize("pattern", LEFTOVERS)
def test_no_leftover_words(pattern):
    hits = [path.name for path in sorted(ROOT.glob("book/*.md")) if re.search(pattern, path.read_text(encoding="utf-8"))]
    assert not hits, f"{pattern!r} in {hits}"
