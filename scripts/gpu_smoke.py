"""Smoke test of the deep engine on a device: every architecture x method, two rounds, resumed == uninterrupted.

For each expert network of `moecl.deep.ARCHITECTURES` and each method label of ``deep-methods``
(`moecl.experiments.deep_methods.DEEP_METHODS`), with the default deterministic settings
(`moecl.deep.DeepConfig.deterministic`: on CUDA ``torch.use_deterministic_algorithms(True)``):

1. an uninterrupted two-round run of two seeds (the batched path), and
2. the same run stopped during its second round's training (KeyboardInterrupt) after a checkpoint
   of round 1, then rerun to the end from that checkpoint;

the two runs' records must be equal array for array (wall times aside). One JSON line per
case goes to ``--out`` (``smoke.jsonl``); the exit status is 1 if any case failed or raised.
Used by scripts/gpu_check.sh (step 1); ``--device cpu --tiny`` is its CPU rehearsal.

``--tiny`` leaves out the methods of more than two experts.

Usage: python scripts/gpu_smoke.py --data DIR --out DIR [--device cuda] [--tiny]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
import traceback

import numpy as np


def same_records(a, b) -> list[str]:
    """Names of the record fields in which two `moecl.deep.RoundRecords` differ (wall time aside)."""
    different = []
    for field in dataclasses.fields(a):
        if field.name == "wall_time":
            continue
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            if x is None or y is None or x.shape != y.shape or not np.array_equal(x, y, equal_nan=x.dtype.kind == "f"):
                different.append(field.name)
        elif x != y:
            different.append(field.name)
    return different


def interrupted_then_resumed(deep, engine, config, stream, seeds, path):
    """The run stopped in its second training call (after round 1's checkpoint), then resumed."""
    original, calls = engine.train, {"n": 0}

    def train(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("stopped mid-way (gpu_smoke.py)")
        return original(*args, **kwargs)

    engine.train = train
    try:
        deep.run(config, stream, seed=seeds, checkpoint=path, checkpoint_every=1)
        raise RuntimeError("the run was not interrupted: moecl.deep.engine.train is no longer the training call")
    except KeyboardInterrupt:
        pass
    finally:
        engine.train = original
    if not os.path.exists(path):
        raise RuntimeError(f"no checkpoint at {path} after round 1")
    return deep.run(config, stream, seed=seeds, checkpoint=path, checkpoint_every=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="data directory with cifar-10-batches-py")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--tiny", action="store_true", help="the smallest sizes (a CPU rehearsal)")
    args = parser.parse_args()
    os.environ["MOECL_DATA"] = args.data

    import torch

    from moecl import deep
    from moecl.deep import engine, streams
    from moecl.deep.networks import make_expert
    from moecl.experiments.deep_methods import DEEP_METHODS

    if args.device == "cpu":
        torch.set_num_threads(1)
    tests = 20 if args.tiny else 80
    class_stream = streams.cifar10_tasks(scenario="class", test_samples_per_task=tests, seed=0)
    # the paper's one-sigmoid network fits binary tasks only: it runs on the two-class task scenario
    binary_stream = streams.cifar10_tasks(scenario="task", test_samples_per_task=tests, seed=0)
    sizes = (dict(samples_per_round=20, epochs=1, batch_size=10, test_samples=10) if args.tiny
             else dict(samples_per_round=100, epochs=2, batch_size=20, test_samples=None))
    widths = {"cnn": 4, "resnet18": 4, "paper-cnn": 4} if args.tiny else {"cnn": 16, "resnet18": 64, "paper-cnn": 16}
    # the CPU rehearsal leaves out the methods of more than two experts (the same code, more time)
    labels = {label: spec for label, spec in DEEP_METHODS.items() if not (args.tiny and spec[1] > 2)}
    os.makedirs(args.out, exist_ok=True)
    failures = skipped = 0
    with open(os.path.join(args.out, "smoke.jsonl"), "w") as log, tempfile.TemporaryDirectory() as work:
        for architecture in deep.ARCHITECTURES:
            stream = binary_stream if architecture == "paper-cnn" else class_stream
            for label, spec in labels.items():
                config = deep.DeepConfig(M=spec[1], method=spec[0], T=2, task_order="cyclic", device=args.device,
                                         architecture=architecture, width=widths[architecture], **sizes)
                case = {"architecture": architecture, "method": label, "device": args.device}
                try:  # a method whose network this architecture cannot be (a head per task on one sigmoid)
                    with torch.device("meta"):
                        make_expert(config, tuple(stream.image_shape), int(stream.num_outputs))
                except ValueError as error:
                    print(f"   {architecture:9s} {label:8s} not applicable: {error}", flush=True)
                    skipped += 1
                    continue
                started = time.perf_counter()
                try:
                    whole = deep.run(config, stream, seed=[0, 1])
                    case["run_s"] = round(time.perf_counter() - started, 2)
                    resumed = interrupted_then_resumed(deep, engine, config, stream, [0, 1],
                                                       os.path.join(work, f"{architecture}-{label}.safetensors"))
                    different = sorted({name for a, b in zip(whole, resumed) for name in same_records(a, b)})
                    case.update(resumed_equal=not different, different=different)
                except Exception as error:  # noqa: BLE001 - every case is reported, the first error does not hide the rest
                    case.update(resumed_equal=False, error=f"{type(error).__name__}: {error}",
                                traceback=traceback.format_exc(limit=4))
                case["seconds"] = round(time.perf_counter() - started, 2)
                failures += not case["resumed_equal"]
                log.write(json.dumps(case) + "\n")
                log.flush()
                status = "ok" if case["resumed_equal"] else f"FAILED {case.get('error') or case['different']}"
                print(f"   {architecture:9s} {label:8s} {case['seconds']:6.2f} s  resumed == uninterrupted: {status}",
                      flush=True)
    cases = len(deep.ARCHITECTURES) * len(labels) - skipped
    print(f"   smoke: {cases - failures} of {cases} cases passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
