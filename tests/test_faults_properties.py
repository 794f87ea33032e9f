"""Property-based tests (hypothesis) over `moecl.Config` and the command line's ``--set`` parser.

Any value of any field either works (a Config whose ``as_dict()`` survives JSON; a run
whose curves are finite) or is refused with a ValueError naming the field: never a
traceback of another type, never a NaN written as a result.
"""

from __future__ import annotations

import dataclasses
import json
import string

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import moecl
from moecl import cli, limits
from moecl.experiments import run_experiment

FIELDS = [field.name for field in dataclasses.fields(moecl.Config)]
CHOICES = ["gap", "none", "load_balance", "entropy", "change", "gate", "least_change", "exact", "gradient",
           "update", "average", "never", "window", "locality", "at-drift", "euclidean", "sigma", "isotropic",
           "definition1"]

#: Any value a user or a program might pass: numbers of every size and sign, non-finite floats,
#: numpy scalars, booleans, None, strings (numeric or not) and containers.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-8, max_value=1e8),
    st.integers(min_value=-5, max_value=50).map(np.int64),
    st.floats(min_value=-1e3, max_value=1e3).map(np.float32),
    st.sampled_from(CHOICES),
    st.text(alphabet=string.printable, max_size=6),
    st.floats(allow_nan=False).map(str),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)


@settings(max_examples=300, deadline=None, database=None)
@given(field=st.sampled_from(FIELDS), value=VALUES)
def test_config_either_converts_or_refuses_naming_the_field(field, value):
    try:
        config = moecl.Config(**{field: value})
    except ValueError as error:
        assert field in str(error), (field, value, str(error))
        return
    fields = config.as_dict()
    assert json.loads(json.dumps(fields)) == fields  # plain JSON types: no numpy scalar, no string number
    assert moecl.Config(**fields) == config


#: What ``--set FIELD=VALUE`` receives: the text of numbers of every size, non-finite ones,
#: choices, and arbitrary text.
TEXTS = st.one_of(
    st.integers(min_value=-(10**12), max_value=10**12).map(str),
    st.integers(min_value=0, max_value=30).map(str),
    st.integers(min_value=1, max_value=12).map(str),
    st.floats(min_value=0.01, max_value=3).map(repr),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=1e-7, max_value=1e7).map(repr),
    st.sampled_from(CHOICES + ["none", "None", "nan", "inf", "-inf", "1e400", "0x10", "1_000", ""]),
    st.text(alphabet=string.ascii_letters + string.digits + "._-+", max_size=8),
)
NAMES = st.one_of(*[st.sampled_from(FIELDS)] * 4, st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=6))



def _plausible(field: str):
    """Texts of the field's own type, over its whole sane range and beyond (half the draws)."""
    if field in moecl.config.INT_FIELDS:
        return st.integers(min_value=0, max_value=10**4).map(str)
    if field in moecl.config.REAL_FIELDS:
        return st.floats(min_value=1e-7, max_value=1e7).map(repr)
    return st.sampled_from(CHOICES)


@settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_set_either_runs_finite_or_refuses_naming_the_field(monkeypatch, data):
    """``--set FIELD=TEXT`` through the parser and a small run (5 rounds, 2 replicates, 200 MB of memory)."""
    monkeypatch.setenv(limits.MEMORY_ENV, str(200e6))
    field = data.draw(NAMES, label="field")
    text = data.draw(st.one_of(_plausible(field), TEXTS), label="text")
    name, value = cli._override(f"{field}={text}")
    assert name == field
    try:
        header, arrays = run_experiment("specialisation", scale="ci", seed=0, replicates=2, rounds=5,
                                        overrides={name: value})
    except ValueError as error:
        assert field in str(error), (field, text, str(error))
        assert "\n" not in str(error)
        return
    assert header["overrides"] == {name: value}
    for key in ("M8/generalization/mean", "M8/forgetting/mean"):
        curve = arrays[key] if key.endswith("generalization/mean") else arrays[key][1:]
        assert np.all(np.isfinite(curve)), (field, text, key, curve)


@pytest.mark.parametrize("text, value", [("3", 3), ("0.5", 0.5), ("none", None), ("gap", "gap"), ("1e-3", 1e-3)])
def test_set_parser_converts_numbers_and_none(text, value):
    assert cli._override(f"sigma0={text}") == ("sigma0", value)
