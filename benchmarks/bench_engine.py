"""Benchmark of the batched engine against the random-number floor and a per-replicate loop.

One configuration (R = 1000, T = 1000, d = 20, s = 6, N = 4, M = 8, Definition 1
features); three wall times measured in the same run:

* floor: only drawing the random numbers the simulation needs, with the same
  generators in the same pattern (`moecl.tasks.draw_rounds`), nothing else;
* batched: `moecl.simulate` on all R replicates at once;
* loop: `moecl.reference.simulate_one`, one replicate at a time, timed on a few
  replicates and scaled to R.

Peak memory of a second batched run is measured with tracemalloc (numpy reports its
allocations to it). With ``--repeat K`` floor and batched are measured K times, alternately,
and the fastest of each counts (on a shared machine the least disturbed run is the best
estimate of the work). The last line has the fixed form
``loop/batched 18.3x batched/floor 1.9x peak 0.41GB``.

Usage: python benchmarks/bench_engine.py [--replicates 1000] [--rounds 1000] [--loop-replicates 20] [--repeat 1]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

import moecl
from moecl.reference import simulate_one
from moecl.tasks import draw_rounds, round_blocks, seed_sequences


def floor_time(config: moecl.Config, replicates: int, seed: int) -> float:
    """Seconds to draw every random number of the run, in the engine's pattern."""
    started = time.perf_counter()
    _, sequences = seed_sequences(seed, replicates)
    rngs = [np.random.default_rng(ss) for ss in sequences]
    for _, length in round_blocks(config.T):
        draw_rounds(config, rngs, length)
    return time.perf_counter() - started


def batched_time(config: moecl.Config, replicates: int, seed: int) -> float:
    """Seconds of one batched `moecl.simulate` call."""
    started = time.perf_counter()
    moecl.simulate(config, replicates=replicates, seed=seed)
    return time.perf_counter() - started


def batched_peak_memory(config: moecl.Config, replicates: int, seed: int) -> int:
    """Peak bytes allocated during a second, untimed batched call (tracemalloc slows allocation)."""
    tracemalloc.start()
    moecl.simulate(config, replicates=replicates, seed=seed)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def loop_time(config: moecl.Config, replicates: int, seed: int, measured: int) -> float:
    """Seconds for R replicates of the per-replicate loop, scaled from ``measured`` of them."""
    started = time.perf_counter()
    for k in range(measured):
        simulate_one(config, seed=seed, replicate=k)
    return (time.perf_counter() - started) * replicates / measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--loop-replicates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="measure floor and batched this often, keep the fastest")
    args = parser.parse_args()

    config = moecl.Config(d=20, s=6, N=4, M=8, T=args.rounds, features="definition1")
    R = args.replicates
    print(f"config: R={R} T={config.T} d={config.d} s={config.s} N={config.N} M={config.M}")
    floors, batches = [], []
    for _ in range(max(1, args.repeat)):
        floors.append(floor_time(config, R, args.seed))
        print(f"floor   (random numbers only)      {floors[-1]:8.2f} s", flush=True)
        batches.append(batched_time(config, R, args.seed))
        print(f"batched (moecl.simulate)           {batches[-1]:8.2f} s", flush=True)
    floor, batched = min(floors), min(batches)
    peak = batched_peak_memory(config, R, args.seed)
    loop = loop_time(config, R, args.seed, min(args.loop_replicates, R))
    print(f"loop    (reference, scaled to R)   {loop:8.2f} s")
    print(f"loop/batched {loop / batched:.1f}x batched/floor {batched / floor:.1f}x peak {peak / 1e9:.2f}GB")


if __name__ == "__main__":
    main()
