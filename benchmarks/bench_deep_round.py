"""Benchmark of one long-scale round of the deep engine against the same steps as a plain torch loop.

The same work twice, in the same process, alternated ``--repeat`` times (the fastest of each kept):

* engine: ``moecl.deep.run`` of one seed, the ``gate-M4`` method of ``deep-methods --scale long``
  (its configuration: M = 4, 100 samples per round, 5 epochs of batches of 20, Adam at lr 5e-3,
  the small CNN of width 8, every test image of the stream, gate input, locality signal,
  termination test and records included);
* plain: a hand-written torch loop over the same rounds: the same M networks (same class,
  width, initialisation), in each round the task and expert the engine's run chose, 100 of the
  task's training images, a fresh Adam, the same number of steps of the same batch size on the
  masked cross-entropy, then the trained expert evaluated on every test image of the stream
  (logits and penultimate features, as the engine keeps them); and before the first round, every
  expert evaluated once, as the engine does. Nothing else: no gate, no records.

Both run after an untimed warm-up round each. Stream: CIFAR-10's five two-class tasks (80 test
images per task, `deep-methods`' ``cifar10``) when ``MOECL_DATA`` holds ``cifar-10-batches-py``,
else synthetic 3 x 32 x 32 images of the same sizes (``--stream cifar-shaped``). The last line has
the fixed form ``engine/plain 1.23x device cpu rounds 10`` (target: at most 1.3x), the ratio of wall
times; the line before it gives the ratio of CPU times (all threads), steadier on a shared machine.
``--profile`` prints where the engine's time goes (cProfile, top functions by own time).
``--blas-threads 1`` limits numpy's BLAS (OpenBLAS) to one thread for the whole run
(``threadpoolctl``): the engine's numpy products (gate, routing of the test images) otherwise
wake OpenBLAS's worker threads, whose busy-waiting after each call takes CPU from torch's thread
on a small machine (benchmarks/README.md).

Usage: python benchmarks/bench_deep_round.py [--rounds 10] [--repeat 2] [--threads 1]
       [--stream auto|cifar10|cifar-shaped] [--device cpu] [--blas-threads N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

import numpy as np
import torch
from torch import nn

from moecl import deep
from moecl.deep import datasets, streams
from moecl.deep.networks import make_expert

sys.path.insert(0, os.path.dirname(__file__))
from bench_deep_replicates import cifar_shaped_stream  # noqa: E402


def long_config(rounds: int, device: str) -> deep.DeepConfig:
    """The ``gate-M4`` configuration of ``deep-methods --scale long`` (moecl/experiments/deep_methods.py)."""
    return deep.DeepConfig(M=4, T=rounds, task_order="random", samples_per_round=100, epochs=5, batch_size=20,
                           lr=5e-3, width=8, test_samples=None, device=device, joint_refit_every=rounds)


def make_stream(name: str) -> streams.TaskStream:
    if name == "auto":
        has_cifar = (datasets.resolve_data_dir() / datasets.CIFAR10_FOLDER).is_dir()
        name = "cifar10" if has_cifar else "cifar-shaped"
    if name == "cifar10":
        return streams.cifar10_tasks(scenario="class", test_samples_per_task=80, seed=0)
    stream = cifar_shaped_stream()
    # the test images per task of deep-methods' cifar10 stream
    tasks = tuple(streams.Task(**{**task.__dict__, "test_images": task.test_images[:80],
                                  "test_labels": task.test_labels[:80],
                                  "test_dataset_labels": task.test_dataset_labels[:80]}) for task in stream.tasks)
    return streams.TaskStream(**{**stream.__dict__, "tasks": tasks})


def plain_loop(config: deep.DeepConfig, stream: streams.TaskStream, routing, seed: int, device) -> None:
    """The engine's training and evaluation steps, and nothing else (see the module docstring)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    experts = [make_expert(config, stream.image_shape, stream.num_outputs).to(device) for _ in range(config.M)]
    tests = [torch.as_tensor(np.array(task.test_images), device=device) for task in stream.tasks]

    @torch.no_grad()
    def evaluate(model):
        model.eval()
        out = []
        for x in tests:
            z = model.embed(x)
            out.append((model.classifier[-1](z).double().cpu().numpy(), z.double().cpu().numpy()))
        return out

    outputs = [evaluate(model) for model in experts]
    for n, m in routing:
        task = stream[n]
        picked = rng.choice(len(task.train_labels), size=config.samples_per_round, replace=False)
        x = torch.as_tensor(np.array(task.train_images[picked]), device=device)
        present = np.unique(task.train_labels[picked])
        y = torch.as_tensor(np.searchsorted(present, task.train_labels[picked]), device=device)
        columns = torch.as_tensor(present, device=device)
        model = experts[m]
        optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
        model.train()
        for _ in range(config.epochs):
            order = torch.as_tensor(rng.permutation(len(y)), device=device)
            for start in range(0, len(y), config.batch_size):
                batch = order[start:start + config.batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x[batch])[:, columns], y[batch])
                loss.backward()
                optimiser.step()
        outputs[m] = evaluate(model)


def timed(function) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--stream", default="auto", choices=("auto", "cifar10", "cifar-shaped"))
    parser.add_argument("--device", default="cpu", choices=deep.DEVICES)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (deep-methods runs with 1 per worker)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--blas-threads", type=int, default=None, help="numpy's BLAS threads (default: numpy's)")
    parser.add_argument("--profile", action="store_true", help="print the engine's profile (cProfile)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=args.blas_threads, user_api="blas"):
            return measure(args)
    return measure(args)


def measure(args) -> None:

    stream = make_stream(args.stream)
    config = long_config(args.rounds, args.device)
    device = deep.resolve_device(config.device)
    from threadpoolctl import threadpool_info

    blas = sorted({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})
    print(f"device: {device.type}, {torch.get_num_threads()} torch threads, BLAS threads {blas}; torch {torch.__version__}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"stream: {stream.name} ({stream.source}), N={stream.N}, images {stream.image_shape}, "
          f"{sum(len(t.test_labels) for t in stream)} test images")
    print(f"config: gate-M4 of deep-methods --scale long, T={config.T}, {config.samples_per_round} samples x "
          f"{config.epochs} epochs in batches of {config.batch_size}, cnn width {config.width}")

    deep.run(config.replace(T=1), stream, seed=args.seed)  # warm-up
    plain_loop(config.replace(T=1), stream, [(0, 0)], args.seed, device)
    engine_times, plain_times = [], []
    for _ in range(args.repeat):
        wall, cpu, records = timed(lambda: deep.run(config, stream, seed=args.seed))
        engine_times.append((wall, cpu))
        routing = list(zip(records.tasks.tolist(), records.experts.tolist()))
        wall, cpu, _ = timed(lambda: plain_loop(config, stream, routing, args.seed, device))
        plain_times.append((wall, cpu))
    (engine_wall, engine_cpu), (plain_wall, plain_cpu) = min(engine_times), min(plain_times)
    print(f"engine  {engine_wall:7.2f} s wall {engine_cpu:7.2f} s cpu  ({engine_wall / args.rounds:.3f} s per round; "
          f"all: {', '.join(f'{w:.2f}' for w, _ in engine_times)})")
    print(f"plain   {plain_wall:7.2f} s wall {plain_cpu:7.2f} s cpu  ({plain_wall / args.rounds:.3f} s per round; "
          f"all: {', '.join(f'{w:.2f}' for w, _ in plain_times)})")
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(deep.run, config, stream, seed=args.seed)
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        pstats.Stats(profile, stream=sys.stdout).sort_stats("cumulative").print_stats("moecl", 25)
    print(f"cpu time engine/plain {engine_cpu / plain_cpu:.2f}x (every thread of the process)")
    print(f"engine/plain {engine_wall / plain_wall:.2f}x device {device.type} rounds {args.rounds}")


if __name__ == "__main__":
    main()
