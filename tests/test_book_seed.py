"""The book seed (`moecl.book_seed`): default, override, and refusal of bad values."""

import pytest

import moecl
from moecl.book_seed import BOOK_SEED_ENV, SEEDS_PER_BOOK_SEED


def test_default_book_seed_keeps_the_offsets(monkeypatch):
    monkeypatch.delenv(BOOK_SEED_ENV, raising=False)
    assert [moecl.book_seed(k) for k in range(3)] == [0, 1, 2]


def test_each_book_seed_owns_a_disjoint_block(monkeypatch):
    blocks = []
    for value in ("1", "2", " 7 "):
        monkeypatch.setenv(BOOK_SEED_ENV, value)
        blocks.append({moecl.book_seed(k) for k in range(SEEDS_PER_BOOK_SEED)})
    assert min(blocks[0]) == SEEDS_PER_BOOK_SEED
    assert not (blocks[0] & blocks[1]) and not (blocks[1] & blocks[2])


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_bad_book_seed_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(BOOK_SEED_ENV, value)
    with pytest.raises(ValueError, match=BOOK_SEED_ENV):
        moecl.book_seed(0)


@pytest.mark.parametrize("offset", [-1, SEEDS_PER_BOOK_SEED, 1.0, True])
def test_bad_offset_is_refused(monkeypatch, offset):
    monkeypatch.delenv(BOOK_SEED_ENV, raising=False)
    with pytest.raises(ValueError, match="offset"):
        moecl.book_seed(offset)
