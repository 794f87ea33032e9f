"""``moecl run NAME --workers 2`` from the command line gives the one-process results file,
array for array, for every registered experiment (the linear ones at their smallest size,
two replicates; deep-methods at a tiny size). Before this test, ``--workers`` crashed every
linear experiment (``simulate_sweep() got multiple values for keyword argument 'progress'``)
while the sweep's own tests, which call the Python API, stayed green."""

from __future__ import annotations

import numpy as np
import pytest

from moecl import cli
from moecl.experiments import EXPERIMENTS
from moecl.results import load_results

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

#: deep-methods at a size that runs in seconds: two methods, two seeds in pieces of one seed.
DEEP_TINY = ["stream=digits", "epochs=1", "samples_per_round=8", "test_samples=10", "width=4", "batch_size=8",
             "T=4", "methods=finetune,gate-M2", "seeds_per_piece=1"]


def _numbers_fields(header: dict) -> dict:
    """The header without its timings and creation time, which differ between two runs of the same numbers."""
    return {key: value for key, value in header.items() if "wall_time" not in key and key != "created"}


def _run(tmp_path, name: str, workers: int) -> tuple[dict, dict]:
    out = tmp_path / f"workers{workers}"
    argv = ["run", name, "--replicates", "2", "--no-progress", "--workers", str(workers), "--out", str(out)]
    if name == "deep-methods":
        argv += [item for setting in DEEP_TINY for item in ("--set", setting)]
    assert cli.main(argv) == 0
    (path,) = out.iterdir()
    return load_results(path)


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_two_workers_give_the_one_process_results_file(tmp_path, name):
    one_header, one_arrays = _run(tmp_path, name, 1)
    two_header, two_arrays = _run(tmp_path, name, 2)
    assert two_arrays.keys() == one_arrays.keys()
    for key, value in one_arrays.items():
        np.testing.assert_array_equal(two_arrays[key], value, err_msg=f"{name}: {key}")
    assert _numbers_fields(two_header) == _numbers_fields(one_header)
