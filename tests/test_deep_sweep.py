"""The deep seeds of ``deep-methods`` on any executor (`moecl.sweep`): the same numbers in this
process, on a two-process pool and on a Dask cluster; the pieces depend on ``seeds_per_piece``
only, and a failed piece names its method and seeds."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from moecl import sweep
from moecl.experiments import deep_methods, run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

#: Two methods x three seeds in pieces of one seed: six pieces, five rounds of a tiny CNN.
TINY = {"stream": "digits", "epochs": 1, "samples_per_round": 8, "test_samples": 10, "width": 4, "batch_size": 8,
        "T": 5, "methods": "finetune,gate-M2", "seeds_per_piece": 1}


def _run(executor=None, **overrides):
    with sweep.using(executor):
        return run_experiment("deep-methods", scale="ci", seed=3, replicates=3, overrides=dict(TINY, **overrides))


@pytest.fixture(scope="module")
def reference():
    return _run()


def _same(got, expected):
    (got_header, got_arrays), (header, arrays) = got, expected
    assert got_header["seeds"] == header["seeds"] == [3, 4, 5] and got_header["seeds_per_piece"] == 1
    assert got_arrays.keys() == arrays.keys()
    for name, value in arrays.items():
        np.testing.assert_array_equal(got_arrays[name], value, err_msg=name)


def test_a_two_process_pool_gives_the_same_numbers(reference):
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        _same(_run(pool), reference)


def test_threads_of_one_process_give_the_same_numbers(reference):
    # torch's generator is process-wide: pieces on threads must not interleave their draws
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=3) as pool:
        _same(_run(pool), reference)


def test_a_dask_local_cluster_gives_the_same_numbers(reference):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            sweep.executor(scheduler=cluster.scheduler_address) as pool:
        _same(_run(pool), reference)


def test_pieces_follow_seeds_per_piece_and_each_seed_runs_once(monkeypatch, reference):
    seen = []
    original = deep_methods.run_deep_piece

    def spy(piece, progress=False):
        seen.append((piece.label, piece.seeds))
        return original(piece, progress)

    monkeypatch.setattr(deep_methods, "run_deep_piece", spy)
    header, arrays = _run(seeds_per_piece=2)
    assert seen == [("finetune", (3, 4)), ("finetune", (5,)), ("gate-M2", (3, 4)), ("gate-M2", (5,))]
    assert header["seeds_per_piece"] == 2
    # seeds 3 and 4 batched together, seed 5 alone: the alone seed is the reference's bit for bit
    np.testing.assert_array_equal(arrays["finetune/task/average_accuracy"][2],
                                  reference[1]["finetune/task/average_accuracy"][2])
    with pytest.raises(ValueError, match="seeds_per_piece=0 must be at least 1"):
        _run(seeds_per_piece=0)


def test_a_piece_that_fails_twice_names_its_method_and_seeds(monkeypatch):
    def broken(piece, progress=False):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(deep_methods, "run_deep_piece", broken)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(
            sweep.SweepError, match=r"piece \d: (finetune|gate-M2) \(method=(finetune|gate), M=[12], T=5, stream=digits\), "
                                    r"seed [345] failed twice: RuntimeError: out of memory"):
        _run(pool)
