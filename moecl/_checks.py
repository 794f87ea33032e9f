"""Argument validators shared by the whole package: one line, naming the bad value, as a ValueError."""

from __future__ import annotations

import math
import numbers


def check_int(name: str, value, minimum: int | None = None) -> int:
    """``value`` as an int, or ValueError naming ``name`` and the value (below ``minimum``, a float, a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) and not (
        hasattr(value, "__index__") and not isinstance(value, float)
    ):
        raise ValueError(f"{name}={value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={value!r} must be at least {minimum}")
    return int(value)


def check_real(name: str, value, low: float, low_open: bool = False) -> float:
    """``value`` as a finite float of at least ``low`` (greater than ``low`` if ``low_open``), or ValueError naming it."""
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be a real number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a real number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name}={value!r} must be finite")
    if number < low or (low_open and number == low):
        bound = "greater than" if low_open else "at least"
        raise ValueError(f"{name}={value!r} must be {bound} {low:g}")
    return number


def check_seed(seed) -> int:
    """A seed as a non-negative int, or ValueError naming it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    return int(seed)
