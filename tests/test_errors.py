"""One module of error types (`moecl.errors`), each still importable from the module that raises it."""

from __future__ import annotations

import importlib

import pytest

from moecl import errors


@pytest.mark.parametrize("module, name", [
    ("moecl.limits", "RunLimitError"), ("moecl.results", "ResultsFileError"), ("moecl.deep.readers", "DataError"),
    ("moecl.deep.datasets", "DataError"), ("moecl.deep.datasets", "DataDirError"),
    ("moecl.deep.checkpoint", "CheckpointError"), ("moecl.sweep", "SweepError"), ("moecl.sweep", "ClusterError"),
])
def test_the_old_paths_name_the_one_class(module, name):
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_the_command_line_tells_a_data_error_without_the_loaders_loaded():
    from moecl import cli

    assert cli._is_data_error(errors.DataError("x.idx: truncated"))
    assert not cli._is_data_error(ValueError("M=0 must be at least 1"))
