"""The book seed: one knob that makes every live computation of the book a new experiment.

Every random seed a chapter uses (pools, `moecl.simulate` seeds, task streams, deep runs)
is ``book_seed(k)`` for a small chapter-local offset ``k``. The book seed ``B`` is read
from the environment variable ``MOECL_BOOK_SEED`` (default 0), and

    book_seed(k) = SEEDS_PER_BOOK_SEED * B + k,

so the default build (``B = 0``) uses the seeds ``k`` themselves, and each other ``B``
draws a disjoint block of seeds: a genuinely different, independent run of every
chapter (the engine derives its random streams from the seed through
`numpy.random.SeedSequence`). Stored results in ``results/`` keep their own seeds: they
are data, not live computations. ``scripts/seed_sweep.py`` runs the chapters under
several book seeds.
"""

from __future__ import annotations

import os

#: The environment variable holding the book seed.
BOOK_SEED_ENV = "MOECL_BOOK_SEED"

#: Seeds one book seed owns: chapter offsets ``k`` must lie in ``[0, SEEDS_PER_BOOK_SEED)``.
SEEDS_PER_BOOK_SEED = 1000


def current_book_seed() -> int:
    """The book seed ``B`` from ``MOECL_BOOK_SEED`` (0 when unset or empty).

    Raises ValueError naming the variable when it is not a non-negative integer.
    """
    text = os.environ.get(BOOK_SEED_ENV, "").strip()
    if not text:
        return 0
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{BOOK_SEED_ENV}={text!r} must be a non-negative integer") from None
    if value < 0:
        raise ValueError(f"{BOOK_SEED_ENV}={text!r} must be a non-negative integer")
    return value


def book_seed(offset: int = 0) -> int:
    """The seed a chapter uses for its ``offset``-th random computation (see the module docstring)."""
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < SEEDS_PER_BOOK_SEED:
        raise ValueError(f"offset={offset!r} must be an integer in [0, {SEEDS_PER_BOOK_SEED})")
    return SEEDS_PER_BOOK_SEED * current_book_seed() + offset
