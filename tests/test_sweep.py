"""Sweeps in pieces (`moecl.sweep`, run by `moecl.simulation.simulate_sweep`): the numbers of a one-process run on any executor,
retries of failed pieces, and the executor of ``--workers`` / ``--scheduler``."""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import moecl
from moecl import simulation, sweep
from same_records import assert_same_records

SEED = 5
R = 7
#: Two structures (M = 4 batched over sigma0 and sigma_t; M = 8 without termination).
CONFIGS = [
    moecl.Config(M=4, T=70, sigma0=0.1),
    moecl.Config(M=4, T=70, sigma0=0.3, sigma_t=0.5),
    moecl.Config(M=4, T=70, sigma0=0.5, T1=9),
    moecl.Config(M=8, T=70, sigma0=0.3, termination="none"),
]
_ORIGINAL_RUN_PIECE = simulation.run_piece


@pytest.fixture(scope="module")
def reference():
    """Every configuration alone, in one batch of all replicates, in this process."""
    return [moecl.simulate(config, replicates=R, seed=SEED) for config in CONFIGS]


def _check(results, reference):
    assert len(results) == len(reference)
    for got, expected in zip(results, reference):
        assert got.config == expected.config
        np.testing.assert_array_equal(got.replicates, expected.replicates)
        np.testing.assert_array_equal(got.pool.W, expected.pool.W)
        assert_same_records(got, expected)


@pytest.mark.parametrize("piece_replicates", [None, 1, 2, 7])
def test_in_process_pieces_are_the_one_batch_run(reference, piece_replicates):
    _check(simulation.simulate_sweep(CONFIGS, R, SEED, None, piece_replicates=piece_replicates), reference)


def test_plan_respects_the_budget_and_covers_every_pair():
    pieces = sweep.plan(CONFIGS, R, SEED, budget_bytes=3 * 70 * (10 * 4 + 49 + 1), min_pieces=1)
    pairs = [(p, int(k)) for piece in pieces for p in piece.positions for k in piece.replicates]
    assert sorted(pairs) == [(p, k) for p in range(len(CONFIGS)) for k in range(R)]
    assert all(len(piece.positions) * len(piece.replicates) <= 3 for piece in pieces)
    assert all(len({c.M for c in piece.configs}) == 1 for piece in pieces)  # one structure per piece
    assert len(sweep.plan(CONFIGS[:1], 100, min_pieces=4)) == 4


def test_a_two_process_pool_gives_the_same_numbers(reference):
    with ProcessPoolExecutor(max_workers=2) as pool:
        _check(simulation.simulate_sweep(CONFIGS, R, SEED, pool), reference)
        _check(simulation.simulate_sweep(CONFIGS, R, SEED, pool, piece_replicates=3), reference)


def test_using_routes_simulate_and_simulate_many(reference):
    with ThreadPoolExecutor(max_workers=2) as pool, sweep.using(pool, min_pieces=3):
        _check(moecl.simulate_many(CONFIGS[:3], replicates=R, seed=SEED), reference[:3])
        _check([moecl.simulate(CONFIGS[3], replicates=R, seed=SEED)], reference[3:])
    assert sweep.current() == (None, None)
    given = moecl.Config(N=3, M=3, T=40, d=8, s=3)
    W, V = np.random.default_rng(1).standard_normal((2, 3, 8))
    alone = moecl.simulate(given, replicates=5, seed=2, pool=(W, V))
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert_same_records(moecl.simulate(given, replicates=5, seed=2, pool=(W, V), executor=pool), alone)


def test_a_dask_local_cluster_gives_the_same_numbers(reference):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster, \
            sweep.executor(scheduler=cluster.scheduler_address) as pool:
        _check(simulation.simulate_sweep(CONFIGS, R, SEED, pool), reference)


def _die_once(piece):
    """Kill the worker process running piece 1, once (a marker file remembers)."""
    marker = os.environ["MOECL_TEST_KILL_MARKER"]
    if piece.number == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return _ORIGINAL_RUN_PIECE(piece)


@pytest.mark.skipif(sys.platform != "linux", reason="the patched piece reaches the workers by fork")
def test_a_killed_worker_is_retried(reference, tmp_path, monkeypatch):
    monkeypatch.setenv("MOECL_TEST_KILL_MARKER", str(tmp_path / "killed"))
    monkeypatch.setattr(simulation, "run_piece", _die_once)
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork")) as pool:
        results = simulation.simulate_sweep(CONFIGS, R, SEED, pool, piece_replicates=2)
    assert (tmp_path / "killed").exists()  # the worker did die
    _check(results, reference)


def test_a_piece_that_fails_twice_is_reported(monkeypatch):
    calls = []

    def broken(piece):
        calls.append(piece.number)
        if piece.number == 2:
            raise FloatingPointError("boom")
        return _ORIGINAL_RUN_PIECE(piece)

    monkeypatch.setattr(simulation, "run_piece", broken)
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(sweep.SweepError) as error:
        simulation.simulate_sweep(CONFIGS, R, SEED, pool, piece_replicates=4)
    message = str(error.value)
    assert calls.count(2) == 2
    assert "piece 2" in message and "replicates 0..3" in message and "FloatingPointError: boom" in message
    assert "configurations [3]" in message and "\n" not in message
    with pytest.raises(sweep.SweepError, match="failed twice"):
        simulation.simulate_sweep(CONFIGS, R, SEED, None, piece_replicates=4)  # in this process too


def test_the_executor_of_the_command_line(monkeypatch):
    with sweep.executor(workers=1) as none:
        assert none is None
    with sweep.executor(workers=2) as pool:
        assert isinstance(pool, ProcessPoolExecutor)
    with pytest.raises(ValueError, match="workers"):
        with sweep.executor(workers=0):
            pass
    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # Dask not installed
    with pytest.raises(sweep.ClusterError, match="moecl\\[cluster\\]"):
        with sweep.executor(scheduler="tcp://127.0.0.1:8786"):
            pass


def test_an_unreachable_scheduler_is_one_line():
    pytest.importorskip("dask.distributed")
    with pytest.raises(sweep.ClusterError) as error:
        with sweep.executor(scheduler="tcp://127.0.0.1:9", timeout=1):
            pass
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("name", ["regime-map", "too-early"])
def test_registered_experiments_on_two_processes_give_the_same_arrays(name):
    """The experiments' simulations (batched and alone) run in pieces under `moecl.sweep.using`."""
    from moecl.experiments import run_experiment

    kwargs = dict(scale="ci", seed=3, replicates=4, rounds=60)
    _, alone = run_experiment(name, **kwargs)
    with sweep.executor(workers=2) as pool, sweep.using(pool):
        _, pieces = run_experiment(name, **kwargs)
    assert alone.keys() == pieces.keys()
    for key in alone:
        np.testing.assert_array_equal(pieces[key], alone[key], err_msg=key)


def test_the_command_line_takes_workers_and_reports_a_bad_scheduler_in_one_line(tmp_path, capsys):
    from moecl.cli import main

    pytest.importorskip("dask.distributed")
    status = main(["run", "too-early", "--replicates", "2", "--out", str(tmp_path), "--no-progress",
                   "--scheduler", "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "cannot reach the Dask scheduler" in err
    assert not list(tmp_path.iterdir())  # nothing written
    assert main(["run", "too-early", "--workers", "0"]) == 2
