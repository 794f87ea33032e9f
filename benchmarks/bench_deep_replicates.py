"""Benchmark of deep MoE replicates batched over seeds against a one-seed-at-a-time loop.

The same work twice, in the same process, on the device of ``--device``:

* loop: ``moecl.deep.run(config, stream, seed=s)`` for each of the R seeds in turn;
* batched: one ``moecl.deep.run(config, stream, seed=[s_1, ..., s_R])``: per round the
  R selected experts train together with stacked parameters (``torch.func`` +
  ``torch.vmap``) and the R trained experts are evaluated in one call.

Both are preceded by an untimed warm-up of one round each (library loading, kernel
choice, CUDA context). The batched replicates are then checked against the loop's:
routing identical, test losses equal to float32 rounding (printed). The last line has
the fixed form ``loop/batched 1.23x device cpu R 6``.

Streams (``--stream``): ``digits``, the paper's one-vs-rest tasks (digits 1, 4, 7) on
scikit-learn's 8 x 8 digits (offline); ``cifar-shaped``, synthetic 3 x 32 x 32 images
of five two-class tasks (class-dependent mean colour plus noise; no data needed), the
size of the GPU runs' CIFAR-10 tasks.

Usage: python benchmarks/bench_deep_replicates.py [--device auto] [--replicates 6] [--rounds 8]
       [--stream digits|cifar-shaped] [--architecture cnn|resnet18] [--width 16] [--threads N]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from moecl import deep
from moecl.deep import datasets, streams


def cifar_shaped_stream(seed: int = 0) -> streams.TaskStream:
    """Five two-class tasks of synthetic 3 x 32 x 32 images, 200 train and 100 test per class."""
    rng = np.random.default_rng(seed)
    classes, train, test = 10, 200, 100
    means = rng.uniform(0.2, 0.8, size=(classes, 3, 1, 1))

    def images(per_class):
        labels = np.repeat(np.arange(classes), per_class)
        noise = rng.normal(0.0, 0.25, size=(len(labels), 3, 32, 32))
        return np.clip(means[labels] + noise, 0.0, 1.0).astype(np.float32), labels

    train_images, train_labels = images(train)
    test_images, test_labels = images(test)
    dataset = datasets.ImageDataset(name="cifar-shaped", train_images=train_images, train_labels=train_labels,
                                test_images=test_images, test_labels=test_labels,
                                class_names=tuple(f"class {k}" for k in range(classes)),
                                source="synthetic 3 x 32 x 32 images (bench_deep_replicates.py)")
    return streams.class_split_tasks(dataset, [[2 * k, 2 * k + 1] for k in range(5)], samples_per_task=200,
                                  test_samples_per_task=100, seed=seed)


def make_stream(name: str) -> streams.TaskStream:
    if name == "digits":
        return streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), seed=0)
    return cifar_shaped_stream()


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=deep.DEVICES)
    parser.add_argument("--replicates", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--experts", type=int, default=4)
    parser.add_argument("--stream", default="digits", choices=("digits", "cifar-shaped"))
    parser.add_argument("--architecture", default="cnn", choices=deep.ARCHITECTURES)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; replicates use seed .. seed + R - 1")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    stream = make_stream(args.stream)
    config = deep.DeepConfig(M=args.experts, T=args.rounds, epochs=args.epochs, width=args.width,
                             architecture=args.architecture, device=args.device)
    device = deep.resolve_device(config.device)
    seeds = list(range(args.seed, args.seed + args.replicates))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {device.type} ({name}); torch {torch.__version__}")
    print(f"stream: {stream.name} ({stream.source}), N={stream.N}, images {stream.image_shape}")
    print(f"config: R={len(seeds)} T={config.T} M={config.M} {config.architecture} width={config.width} "
          f"samples/round={config.samples_per_round} epochs={config.epochs} batch={config.batch_size} "
          f"test/type={config.test_samples}")

    warm = config.replace(T=1)
    deep.run(warm, stream, seed=seeds[0])
    deep.run(warm, stream, seed=seeds[:2])

    loop, alone = timed(lambda: [deep.run(config, stream, seed=s) for s in seeds])
    print(f"loop    ({len(seeds)} single-seed runs)   {loop:8.2f} s")
    batched, together = timed(lambda: deep.run(config, stream, seed=seeds))
    print(f"batched (one run of {len(seeds)} seeds)    {batched:8.2f} s")

    same_routing = all(np.array_equal(a.experts, b.experts) and np.array_equal(a.tasks, b.tasks)
                       for a, b in zip(alone, together))
    absolute = max(float(np.max(np.abs(a.test_loss - b.test_loss))) for a, b in zip(alone, together))
    relative = max(float(np.max(np.abs(a.test_loss - b.test_loss) / np.abs(a.test_loss)))
                   for a, b in zip(alone, together))
    print(f"check: routing identical {same_routing}; max test-loss difference {absolute:.1e} "
          f"(relative {relative:.1e}; float32 rounding amplified by training, see README)")
    print(f"loop/batched {loop / batched:.2f}x device {device.type} R {len(seeds)}")


if __name__ == "__main__":
    main()
