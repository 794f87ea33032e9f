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


def timed_run(args, pool=None) -> tuple[float, dict, dict]:
    started = time.perf_counter()
    with sweep.using(pool):
        header, arrays = run_experiment("regime-map", scale=args.scale, seed=0, replicates=args.replicates,
                                        rounds=args.rounds)
    return time.perf_counter() - started, header, arrays


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
        pool.submit(int, 0).result()  # start the workers before timing
        for _ in range(max(1, args.repeat)):
            seconds, header, one = timed_run(args)
            one_times.append(seconds)
            print(f"1 process            {seconds:8.2f} s", flush=True)
            seconds, _, many = timed_run(args, pool)
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
    print(f"workers {args.workers} speedup {speedup:.2f}x efficiency {100 * speedup / args.workers:.0f}% "
          f"identical {'yes' if identical else 'NO'}")


if __name__ == "__main__":
    main()
