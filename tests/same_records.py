"""`assert_same_records`: the one comparison of two runs' records that the tests use.

A run is a `moecl.SimulationResult` or a dict of arrays (the oracle `moecl.reference.simulate_one`,
the phase model's `simulate_phase_model`, expectation curves). Test files import it as
``from same_records import RECORD_NAMES, assert_same_records`` (pytest puts tests/ on the path).
"""

from __future__ import annotations

import numpy as np

from moecl.algorithm import RECORDS

#: Every record of a `moecl.SimulationResult`, in declaration order (`moecl.algorithm.RECORDS`).
RECORD_NAMES = tuple(record.name for record in RECORDS)


def _get(run, name: str):
    return run[name] if isinstance(run, dict) else getattr(run, name)


def assert_same_records(got, expected, names=None, *, row=None, rtol=0.0, atol=0.0, label: str = "") -> None:
    """Records ``names`` of ``got`` equal those of ``expected``.

    names: default every record (`RECORD_NAMES`), or every key when ``expected`` is a dict.
    row: compare row ``row`` of ``got`` (one replicate of a batch) with ``expected``.
    rtol, atol: both 0 (default) asks for equality bit for bit; otherwise floating-point
    records agree within `numpy.testing.assert_allclose`'s tolerances (NaN equal to NaN),
    and integer and boolean records are still compared exactly.
    """
    if names is None:
        names = tuple(expected) if isinstance(expected, dict) else RECORD_NAMES
    for name in names:
        mine, theirs = np.asarray(_get(got, name)), np.asarray(_get(expected, name))
        if row is not None:
            mine = mine[row]
        message = f"{label}: {name}" if label else name
        if (rtol or atol) and np.issubdtype(mine.dtype, np.floating):
            np.testing.assert_allclose(mine, theirs, rtol=rtol, atol=atol, err_msg=message)
        else:
            np.testing.assert_array_equal(mine, theirs, err_msg=message)
