"""`deep-methods`: CNN experts, the paper's gate against SEED and the baselines (book chapter: SEED)."""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np

from ..results import make_header
from .registry import EXPERIMENTS, Scale, check_seed, experiment, resolve_scale


#: Methods of ``deep-methods``: label -> (DeepConfig.method, M).
DEEP_METHODS = {
    "finetune": ("finetune", 1),
    "joint": ("joint", 1),
    "gate-M2": ("gate", 2),
    "gate-M4": ("gate", 4),
    "gate-M8": ("gate", 8),
    "seed-M2": ("seed", 2),
    "seed-M4": ("seed", 4),
    "seed-M8": ("seed", 8),
}


#: Size presets of ``deep-methods``: seeds (the replicates) and rounds, two, resp. four, cycles
#: through the five tasks (a stream of N tasks gets ``rounds // 5 * N`` rounds unless given).
DEEP_SCALES = {"ci": Scale(replicates=2, rounds=10), "paper": Scale(replicates=5, rounds=20)}


_DEEP_KEYS = ("average_accuracy", "accuracy_forgetting", "backward_transfer", "forgetting", "generalization")


#: Task streams of ``deep-methods`` (``--set stream=NAME``), class-incremental labels.
#: digits: {0,1}, {2,3}, ..., {8,9} of `moecl.deep.datasets.load_digits` (MNIST, else scikit-learn's digits);
#: cifar10: the five two-class tasks of `moecl.deep.streams.cifar10_tasks`; tiny-imagenet: the first
#: ``classes`` classes of ``wnids.txt`` (``--set classes=K``, a multiple of 4; default 20, the
#: data directory's subset) in four-class tasks (`moecl.deep.streams.tiny_imagenet_tasks`); K = 200 is
#: the full-size stream of 50 tasks.
DEEP_STREAMS = ("digits", "cifar10", "tiny-imagenet")


#: Per stream: test images per task, and the `moecl.deep.DeepConfig` fields that differ from digits
#: (colour images: fewer samples and epochs per round at the CI scale, so that a CPU runs it).
_DEEP_STREAM_SETTINGS = {
    "digits": (60, {}),
    "cifar10": (80, {"ci": {"samples_per_round": 60, "epochs": 4}}),
    "tiny-imagenet": (80, {"ci": {"samples_per_round": 60, "epochs": 4}}),
}


#: `moecl.deep.DeepConfig` fields that ``--set`` may change (the experiment sets method, M and T).
_DEEP_SETTABLE = ("device", "architecture", "width", "epochs", "samples_per_round", "batch_size", "lr",
                  "termination", "test_samples")


_TINY_IMAGENET_CLASSES = 20


_TINY_IMAGENET_CLASSES_PER_TASK = 4


def _deep_stream(name: str, seed: int, classes: int = _TINY_IMAGENET_CLASSES):
    """The class-incremental stream ``name`` of `DEEP_STREAMS` (see there)."""
    from ..deep import datasets, streams

    test_samples = _DEEP_STREAM_SETTINGS[name][0]
    if name == "digits":
        return streams.class_split_tasks(datasets.load_digits(), [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]],
                                      scenario="class", test_samples_per_task=test_samples, seed=seed)
    if name == "cifar10":
        return streams.cifar10_tasks(scenario="class", test_samples_per_task=test_samples, seed=seed)
    return streams.tiny_imagenet_tasks(num_classes=classes, classes_per_task=_TINY_IMAGENET_CLASSES_PER_TASK,
                                    scenario="class", test_samples_per_task=test_samples, seed=seed)


@experiment(
    "deep-methods",
    "split digits, CIFAR-10 or Tiny ImageNet (cyclic tasks; --set stream=...): the paper's MoE gate "
    "and SEED (M = 2, 4, 8), fine-tuning and joint training; task- and class-incremental accuracy metrics per seed",
)
def deep_methods(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """The deep comparison of book/seed.md from the command line (issue 10).

    Stream (``overrides={"stream": NAME}``, on the command line ``--set stream=NAME``;
    default ``digits``), one of `DEEP_STREAMS`: tasks with class-incremental labels, in
    cyclic order; the header's ``stream`` and ``source`` say which data it ran on.
    ``classes`` (tiny-imagenet only) sets the number of Tiny ImageNet classes; without
    ``rounds``, a stream of N tasks runs the preset's cycles, ``rounds // 5 * N``
    rounds. Other overrides change the `moecl.deep.DeepConfig` fields of
    `_DEEP_SETTABLE` in every method, e.g. ``--set device=cuda`` for a GPU run (the
    default is ``cpu``, deterministic); method, M and T are the experiment's own.
    Replicate k is seed ``seed + k`` of one batched ``deep.run(..., seed=[seed, seed + 1, ...])``
    (equal to a run of that seed alone up to float32 rounding). Arrays, per method label and
    scenario (``task``, ``class``): ``<label>/<scenario>/<metric>`` (R,) for the metrics
    of `moecl.deep.summarise`, and ``<label>/<scenario>/accuracy_matrix`` (R, T, T).
    """
    from .. import deep

    if scale not in DEEP_SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(DEEP_SCALES)}")
    overrides = dict(overrides or {})
    stream_name = overrides.pop("stream", "digits")
    if stream_name not in DEEP_STREAMS:
        raise ValueError(f"stream={stream_name!r} is not one of {', '.join(DEEP_STREAMS)}")
    if "classes" in overrides and stream_name != "tiny-imagenet":
        raise ValueError(f"classes={overrides['classes']!r} applies to stream='tiny-imagenet' only, "
                         f"not to stream={stream_name!r}")
    classes = overrides.pop("classes", _TINY_IMAGENET_CLASSES)
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or classes < 8 or (
            classes % _TINY_IMAGENET_CLASSES_PER_TASK):
        raise ValueError(f"classes={classes!r} must be a multiple of {_TINY_IMAGENET_CLASSES_PER_TASK} "
                         "of at least 8 (Tiny ImageNet classes, in four-class tasks)")
    for field_name in overrides:
        if field_name not in _DEEP_SETTABLE:
            raise ValueError(
                f"--set {field_name}: deep-methods runs moecl.deep and takes none of the moecl.Config fields; "
                f"it takes stream, classes and the DeepConfig fields {', '.join(_DEEP_SETTABLE)}")
    seed = check_seed(seed)
    preset = DEEP_SCALES[scale]
    R, T = resolve_scale("ci", preset.replicates if replicates is None else replicates,
                         preset.rounds if rounds is None else rounds)
    started = time.perf_counter()
    fields = dict(T=T, task_order="cyclic", samples_per_round=100, epochs=5, batch_size=20,
                  lr=5e-3, width=8, test_samples=None, device="cpu")
    fields.update(_DEEP_STREAM_SETTINGS[stream_name][1].get(scale, {}))
    fields.update(overrides)
    base = deep.DeepConfig(**fields)  # checks the overrides before any data is read
    try:
        stream = _deep_stream(stream_name, seed, classes)
    except FileNotFoundError as error:  # a stream whose data is absent is a value this run cannot take
        raise ValueError(f"stream={stream_name!r} needs data that is not in the data directory ({error}); "
                         f"set MOECL_DATA to a folder that has it (data_scripts/download.py)") from error
    if rounds is None and stream.N != 5:  # the preset's cycles through a stream of N tasks
        T = preset.rounds // 5 * stream.N
        base = base.replace(T=T)
    arrays, docs, configs, wall_times = {}, {}, {}, {}
    for index, (label, (method, M)) in enumerate(DEEP_METHODS.items()):
        config = base.replace(method=method, M=M)
        configs[label] = dataclasses.asdict(config)
        if progress:
            print(f"[{index + 1}/{len(DEEP_METHODS)}] {label}: method={method}, M={M}", file=sys.stderr, flush=True)
        clock = time.perf_counter()
        # the R seeds train in lockstep, their selected experts batched (moecl.deep.run_replicates)
        records = deep.run(config, stream, seed=[seed + k for k in range(R)], progress=progress)
        wall_times[label] = round(time.perf_counter() - clock, 3)
        for scenario in deep.SCENARIOS:
            summaries = [deep.summarise(r, scenario=scenario) for r in records]
            for key in _DEEP_KEYS:
                arrays[f"{label}/{scenario}/{key}"] = np.array([s[key] for s in summaries])
            arrays[f"{label}/{scenario}/accuracy_matrix"] = np.stack(
                [deep.accuracy_matrix(r, scenario) for r in records])
    docs["<label>/<scenario>/<metric>"] = f"per seed, (R,): {', '.join(_DEEP_KEYS)} (moecl.deep.summarise)"
    docs["<label>/<scenario>/accuracy_matrix"] = "per seed, (R, T, T): accuracy on task i after round t (NaN: unseen)"
    header = make_header(
        "deep-methods", scale, seed, R, time.perf_counter() - started,
        description=EXPERIMENTS["deep-methods"].description,
        rounds=T, labels=list(DEEP_METHODS), configs=configs, stream=stream_name, source=stream.source,
        seeds=[seed + k for k in range(R)], simulation_wall_times=wall_times, arrays=docs,
    )
    return header, arrays
