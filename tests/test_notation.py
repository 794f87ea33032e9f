"""The notation page (book/notation.md) against the package: every `moecl.Config` field has a
line in its tables, and every function, class, pool or result attribute it names exists."""

import dataclasses
import importlib
import re
from pathlib import Path

import pytest

import moecl

PAGE = (Path(__file__).resolve().parents[1] / "book" / "notation.md").read_text()


def test_every_config_field_is_documented_and_nothing_else():
    documented = set(re.findall(r"`Config\.(\w+)`", PAGE))
    fields = {field.name for field in dataclasses.fields(moecl.Config)}
    assert fields <= documented, f"Config fields missing from the notation table: {sorted(fields - documented)}"
    assert documented <= fields, f"the table names fields Config does not have: {sorted(documented - fields)}"


@pytest.mark.parametrize("module, name", sorted(set(re.findall(r"`moecl\.(\w+)\.(\w+)`", PAGE))))
def test_every_named_function_exists(module, name):
    assert hasattr(importlib.import_module(f"moecl.{module}"), name), f"moecl.{module}.{name} does not exist"


def test_every_named_attribute_exists():
    named = set(re.findall(r"`(Pool|SimulationResult)\.(\w+)", PAGE))
    assert named, "the page names no Pool or SimulationResult attribute: the pattern is stale"
    for owner, attribute in named:
        cls = getattr(moecl, owner)
        assert attribute in {f.name for f in dataclasses.fields(cls)} or hasattr(cls, attribute), f"{owner}.{attribute}"
