"""Benchmark of sweeps in pieces (`moecl.sweep`): the regime map on 1 and 2 local worker processes.

The registered experiment ``regime-map`` (its ``ci`` grid by default: 2 sigma_t x 2 sigma0 x
2 expert counts x termination on/off plus M = 1, 20 settings, R = 40, T = 300) runs twice in
one process: in one batch per structure, as without workers, and inside
``moecl.sweep.using(pool)`` with a pool of ``--workers`` processes, where every batch is cut
into pieces. The two runs' arrays must be equal bit for bit. Printed: both wall times, the
speed-up and the parallel efficiency (speed-up / workers), and the cost per simulated
(setting, replicate, round). The last line has the fixed form
``workers 2 speedup 1.71x efficiency 86% identical yes``.

Usage: python benchmarks/bench_sweep.py [--workers 2] [--scale ci] [--replicates R] [--rounds T] [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from moecl import sweep
from moecl.experiments import run_experiment


def timed_run(args, pool=None) -> tuple[float, float, dict, dict]:
    """Wall time and this process's CPU time (all its threads) of one regime-map run."""
    started, cpu = time.perf_counter(), time.process_time()
    with sweep.using(pool):
        header, arrays = run_experiment("regime-map", scale=args.scale, seed=0, replicates=args.replicates,
                                        rounds=args.rounds)
    return time.perf_counter() - started, time.process_time() - cpu, header, arrays


def _warm(seconds: float) -> int:
    """A worker's first task: import the engine, then stay busy so that the next task starts another worker."""
    import moecl.algorithm  # noqa: F401

    time.sleep(seconds)
    return os.getpid()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", default="ci")
    parser.add_argument("--replicates", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="time each run this often, keep the fastest")
    args = parser.parse_args()

    print(f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    one_times, many_times = [], []
    with sweep.executor(workers=args.workers) as pool:
        # start every worker and import the engine there before timing, as on a running cluster
        started = {future.result() for future in [pool.submit(_warm, 0.5) for _ in range(args.workers)]}
        print(f"{len(started)} worker processes started", flush=True)
        cores = []
        for _ in range(max(1, args.repeat)):
            seconds, cpu, header, one = timed_run(args)
            one_times.append(seconds)
            cores.append(cpu / seconds)
            print(f"1 process            {seconds:8.2f} s  ({cpu:.2f} s CPU: {cpu / seconds:.2f} cores busy)",
                  flush=True)
            seconds, _, _, many = timed_run(args, pool)
            many_times.append(seconds)
            print(f"{args.workers} worker processes   {seconds:8.2f} s", flush=True)
    identical = one.keys() == many.keys() and all(np.array_equal(one[k], many[k], equal_nan=True) for k in one)
    one_time, many_time = min(one_times), min(many_times)
    settings = len(header["configs"])
    units = settings * header["replicates"] * header["rounds"]
    if units:
        print(f"{settings} settings x R {header['replicates']} x T {header['rounds']}: "
              f"{1e6 * one_time / units:.2f} us per (setting, replicate, round) in one process")
    speedup = one_time / many_time
    # the engine's background thread (random numbers of the next block) already keeps part of a
    # second core busy in one process, so on C cores no number of workers beats C / (cores busy)
    busy = max(cores)
    print(f"one process keeps {busy:.2f} cores busy: the ceiling on {os.cpu_count()} cores is "
          f"{(os.cpu_count() or 1) / busy:.2f}x")
    print(f"workers {args.workers} speedup {speedup:.2f}x efficiency {100 * speedup / args.workers:.0f}% "
          f"identical {'yes' if identical else 'NO'}")


if __name__ == "__main__":
    main()
