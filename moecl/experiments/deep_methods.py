"""`deep-methods`: CNN experts, the paper's gate against SEED and the baselines (book chapter: SEED)."""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time

import numpy as np

from ..results import make_header
from .. import sweep
from .._checks import check_int, check_seed
from .registry import EXPERIMENTS, Scale, experiment, resolve_scale


#: Methods of ``deep-methods``: label -> (DeepConfig.method, M[, termination]).
DEEP_METHODS = {
    "finetune": ("finetune", 1),
    "replay": ("replay", 1),
    "joint": ("joint", 1),
    "gate-M2": ("gate", 2),
    "gate-M4": ("gate", 4),
    "gate-M8": ("gate", 8),
    "seed-M2": ("seed", 2),
    "seed-M4": ("seed", 4),
    "seed-M8": ("seed", 8),
}


#: Methods of the ``long`` preset: long enough for the gate to terminate (T >= 5 T1 at M = 8). One
#: network fine-tuned in turn is the single expert; joint training is one offline fit on everything
#: drawn, after the last round (``joint_refit_every = T``; only its final row is a fit).
LONG_METHODS = {
    "finetune": ("finetune", 1),
    "joint": ("joint", 1),
    "gate-M4": ("gate", 4),
    "gate-M4-no-termination": ("gate", 4, "none"),
    "gate-M8": ("gate", 8),
    "gate-M8-no-termination": ("gate", 8, "none"),
    "seed-M4": ("seed", 4),
    "seed-M8": ("seed", 8),
}


#: Size presets of ``deep-methods``: seeds (the replicates) and rounds. ``ci`` (two cycles through five
#: tasks) checks the mechanics only and is too short to test termination; ``long`` and ``paper`` must
#: satisfy T >= 5 T1 for their largest M (`MIN_ROUNDS_PER_T1`).
DEEP_SCALES = {"ci": Scale(replicates=2, rounds=10), "long": Scale(replicates=10, rounds=200),
               "paper": Scale(replicates=5, rounds=200)}


#: Seeds per piece (``--set seeds_per_piece=K``): each method's seeds run in pieces of K, one batched
#: `moecl.deep.run` each, on the executor of ``--workers`` / ``--scheduler`` when one is set. The
#: numbers depend on K only (a batch of float32 networks sums in another order than one network
#: alone), never on the executor or the number of workers.
DEEP_PIECE_SEEDS = 5


#: A run other than ``ci`` must give the gate at least this many times its exploration T1 (largest M).
MIN_ROUNDS_PER_T1 = 5


_DEEP_KEYS = ("average_accuracy", "backward_transfer", "average_forgetting", "forgetting", "generalization")


#: Task streams of ``deep-methods`` (``--set stream=NAME``), class-incremental labels.
#: digits: {0,1}, {2,3}, ..., {8,9} of `moecl.deep.datasets.load_digits` (MNIST, else scikit-learn's digits);
#: digits-1v: the paper's one-vs-rest tasks (digits 1, 4, 7; task-incremental only);
#: cifar10: the five two-class tasks of `moecl.deep.streams.cifar10_tasks`; tiny-imagenet: the first
#: ``classes`` classes of ``wnids.txt`` (``--set classes=K``, a multiple of 4; default 20, the
#: data directory's subset) in four-class tasks (`moecl.deep.streams.tiny_imagenet_tasks`); K = 200 is
#: the full-size stream of 50 tasks; cifar100: twenty five-class tasks, one per CIFAR-100 superclass
#: (**book choice**, book/choices.md; `moecl.deep.streams.cifar100_tasks` with ``grouping="superclass"``).
DEEP_STREAMS = ("digits", "digits-1v", "cifar10", "tiny-imagenet", "cifar100")


#: Per stream: test images per task, and the `moecl.deep.DeepConfig` fields that differ from digits
#: (colour images: fewer samples and epochs per round at the small scale, so that a CPU runs it).
_DEEP_STREAM_SETTINGS = {
    "digits": (60, {}),
    "digits-1v": (100, {}),
    "cifar10": (80, {"ci": {"samples_per_round": 60, "epochs": 4}}),
    "tiny-imagenet": (80, {"ci": {"samples_per_round": 60, "epochs": 4}}),
    "cifar100": (100, {"ci": {"samples_per_round": 60, "epochs": 4}}),
}


#: `moecl.deep.DeepConfig` fields the experiment owns (it sweeps them per method); ``--set`` may change
#: every other field, T included.
_DEEP_OWNED = ("method", "M", "termination")


_TINY_IMAGENET_CLASSES = 20


_TINY_IMAGENET_CLASSES_PER_TASK = 4


@dataclasses.dataclass(frozen=True)
class DeepPiece:
    """One method's seeds ``seeds`` of a ``deep-methods`` run: one batched `moecl.deep.run`.

    ``stream`` is the recipe (name, seed, classes) of `_deep_stream`, not its images: a worker
    builds the stream itself from its data directory (``MOECL_DATA``). ``threads``: torch's
    CPU threads in the process that planned the run; a worker uses as many, since the
    order of float32 sums (and so the numbers) can depend on it."""

    number: int
    label: str
    config: object
    stream: tuple
    seeds: tuple
    checkpoint: str | None = None
    threads: int = 1

    def describe(self) -> str:
        first, last = self.seeds[0], self.seeds[-1]
        span = f"seed {first}" if first == last else f"seeds {first}..{last}"
        return (f"piece {self.number}: {self.label} (method={self.config.method}, M={self.config.M}, "
                f"T={self.config.T}, stream={self.stream[0]}), {span}")


_STREAM_CACHE: dict = {}


def _stream_of(recipe: tuple):
    """The stream of ``recipe`` (name, seed, classes), built once per process and data directory."""
    key = (recipe, os.environ.get("MOECL_DATA"))
    if key not in _STREAM_CACHE:
        _STREAM_CACHE.clear()  # one stream at a time: a stream holds its images
        _STREAM_CACHE[key] = _deep_stream(*recipe)
    return _STREAM_CACHE[key]


#: One deep piece at a time per process: torch's random generator (seeded per replicate) and its
#: thread count are process-wide, so two pieces on the threads of one process (a Dask worker with
#: several threads, a thread pool) would draw from each other's generator.
_PIECE_LOCK = threading.Lock()


def run_deep_piece(piece: DeepPiece, progress: bool = False) -> tuple[list, float]:
    """The `moecl.deep.RoundRecords` of each seed of ``piece``, and the seconds it took."""
    with _PIECE_LOCK:
        return _run_deep_piece(piece, progress)


def _run_deep_piece(piece: DeepPiece, progress: bool) -> tuple[list, float]:
    import torch

    from .. import deep

    clock = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(piece.threads)
    try:
        records = deep.run(piece.config, _stream_of(piece.stream), seed=list(piece.seeds), progress=progress,
                           checkpoint=piece.checkpoint, checkpoint_every=10)
    finally:
        torch.set_num_threads(threads)
    return records, time.perf_counter() - clock


def _deep_stream(name: str, seed: int, classes: int = _TINY_IMAGENET_CLASSES):
    """The class-incremental stream ``name`` of `DEEP_STREAMS` (see there)."""
    from ..deep import datasets, streams

    test_samples = _DEEP_STREAM_SETTINGS[name][0]
    if name == "digits-1v":
        return streams.one_vs_rest_tasks(samples_per_task=None, test_samples_per_task=test_samples, seed=seed)
    if name == "digits":
        return streams.class_split_tasks(datasets.load_digits(), [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]],
                                      scenario="class", test_samples_per_task=test_samples, seed=seed)
    if name == "cifar10":
        return streams.cifar10_tasks(scenario="class", test_samples_per_task=test_samples, seed=seed)
    if name == "cifar100":
        return streams.cifar100_tasks(grouping="superclass", scenario="class", test_samples_per_task=test_samples,
                                      seed=seed)
    return streams.tiny_imagenet_tasks(num_classes=classes, classes_per_task=_TINY_IMAGENET_CLASSES_PER_TASK,
                                    scenario="class", test_samples_per_task=test_samples, seed=seed)


@experiment(
    "deep-methods",
    "split digits, one-vs-rest digits, CIFAR-10 or Tiny ImageNet (--set stream=...): the paper's MoE gate "
    "(with and without termination) against SEED, fine-tuning, replay and joint training; accuracy metrics "
    "per seed in both scenarios and under both scoring rules; resumable (--scale long: T = 200, 10 seeds)",
    owns={name: "deep-methods sweeps it per method" for name in _DEEP_OWNED},
    presets=DEEP_SCALES,
    device=True,
    needs_data=True,
    checkpoints=True,
)
def deep_methods(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """The deep comparison of book/seed.md and book/deep.md from the command line.

    Stream (``overrides={"stream": NAME}``, on the command line ``--set stream=NAME``;
    default ``digits``), one of `DEEP_STREAMS`; the header's ``stream`` and ``source``
    say which data it ran on. ``classes`` (tiny-imagenet only) sets the number of Tiny
    ImageNet classes; ``methods`` (comma-separated labels) runs a subset of the
    preset's methods. Every other override sets a `moecl.deep.DeepConfig` field in every
    method (``--set T=200``, ``--set device=cuda``, ``--set gate_input=colour-stats``,
    ...), except the fields the experiment sweeps (`_DEEP_OWNED`). The ``ci`` preset
    (cyclic tasks, ten rounds) checks the mechanics; ``long`` and ``paper`` (T = 200,
    random task order as in the paper, `LONG_METHODS`) are refused in one line if T is
    below ``MIN_ROUNDS_PER_T1`` times the exploration T1 of their largest M.

    ``checkpoint`` (a folder; the command line passes ``<results file>.ckpt``): each
    piece writes its checkpoint there as it runs (``<label>.safetensors``, or
    ``<label>-seeds<a>-<b>.safetensors`` when a method's seeds are cut into several
    pieces) and a rerun with the same arguments resumes from it (`moecl.deep.run`).

    Replicate k is seed ``seed + k``. Each method's seeds run in pieces of
    ``seeds_per_piece`` (default `DEEP_PIECE_SEEDS`), one batched ``deep.run`` each; under
    `moecl.sweep.using` (``--workers``, ``--scheduler``) the pieces of every method run on
    that executor, a failed piece retried once. The numbers depend on ``seeds_per_piece``
    only, not on the executor.
    Arrays, per method label, scenario (``task``, ``class``; ``task-current`` for the
    task-incremental scenario scored by each method's current predictor) and metric:
    ``<label>/<scenario>/<metric>`` (R,) for the metrics of `moecl.deep.summarise`;
    ``<label>/<scenario>/accuracy_curve`` (R, T), the mean accuracy over the tasks seen
    after each round; at the ``ci`` scale also ``<label>/<scenario>/accuracy_matrix``
    (R, T, T); ``<label>/termination_round`` (R,) and ``<label>/concentration`` (R,).
    """
    from .. import deep

    settings = _parse_settings(scale, seed, replicates, rounds, overrides)
    started = time.perf_counter()
    stream, base, T = _build_stream(settings)
    pieces = _plan_pieces(settings, base)
    by_label, wall_times = _records_by_label(pieces, _run_pieces(pieces, progress), settings.labels)
    scenarios = [s for s in deep.SCENARIOS if s == "task" or stream.scenario == "class"]
    arrays, docs = _summarise(by_label, scenarios, T, scale)
    configs = {label: dataclasses.asdict(config) for label, config in _method_configs(settings, base).items()}
    header = make_header(
        "deep-methods", scale, settings.seed, settings.R, time.perf_counter() - started,
        description=EXPERIMENTS["deep-methods"].description,
        rounds=T, labels=list(settings.labels), configs=configs, stream=settings.stream, source=stream.source,
        seeds=settings.seeds, seeds_per_piece=settings.per_piece, simulation_wall_times=wall_times, arrays=docs,
        scenarios=scenarios + ["task-current"],
    )
    return header, arrays


@dataclasses.dataclass(frozen=True)
class DeepSettings:
    """What a ``deep-methods`` call asks for, checked (`_parse_settings`): scale, seeds, rounds, the stream,
    the methods (label -> spec of `DEEP_METHODS`), the `moecl.deep.DeepConfig` fields of every method, the
    seeds per piece and the checkpoint folder."""

    scale: str
    seed: int
    R: int
    T: int
    rounds_given: bool
    stream: str
    classes: int
    labels: dict
    fields: dict
    per_piece: int
    checkpoint: str | None

    @property
    def seeds(self) -> list[int]:
        return [self.seed + k for k in range(self.R)]


def _parse_settings(scale: str, seed, replicates, rounds, overrides) -> DeepSettings:
    """Step 1: the overrides checked and split into the experiment's own keys and DeepConfig fields."""
    from .. import deep

    if scale not in DEEP_SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(DEEP_SCALES)}")
    overrides = dict(overrides or {})
    checkpoint = overrides.pop("checkpoint", None)
    chosen = overrides.pop("methods", None)
    per_piece = check_int("seeds_per_piece", overrides.pop("seeds_per_piece", DEEP_PIECE_SEEDS), minimum=1)
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
    known = {f.name for f in dataclasses.fields(deep.DeepConfig)}
    for field_name in overrides:
        if field_name in _DEEP_OWNED:
            raise ValueError(f"--set {field_name}: deep-methods sets {', '.join(_DEEP_OWNED)} itself, per method")
        if field_name not in known:
            raise ValueError(
                f"--set {field_name}: deep-methods runs moecl.deep and takes none of the moecl.Config fields; "
                f"it takes stream, classes and the DeepConfig fields but {', '.join(_DEEP_OWNED)}")
    if "T" in overrides and rounds is not None:
        raise ValueError("give the rounds once: --set T=... or rounds, not both")
    seed = check_seed(seed)
    preset = DEEP_SCALES[scale]
    rounds = overrides.pop("T", rounds)
    R, T = resolve_scale("ci", preset.replicates if replicates is None else replicates,
                         preset.rounds if rounds is None else rounds)
    labels = DEEP_METHODS if scale == "ci" else LONG_METHODS
    if chosen is not None:  # --set methods=a,b,c: a subset of the preset's methods, in its order
        wanted = [name.strip() for name in str(chosen).split(",") if name.strip()]
        unknown = [name for name in wanted if name not in labels]
        if unknown or not wanted:
            raise ValueError(f"methods={chosen!r}: choose labels of the {scale} preset from {', '.join(labels)}")
        labels = {label: spec for label, spec in labels.items() if label in wanted}
    fields = dict(T=T, task_order="cyclic" if scale == "ci" else "random", samples_per_round=100, epochs=5,
                  batch_size=20, lr=5e-3, width=8, test_samples=None, device="cpu")
    fields.update(_DEEP_STREAM_SETTINGS[stream_name][1].get(scale, {}))
    if scale != "ci":
        fields["joint_refit_every"] = T
    fields.update(overrides)
    return DeepSettings(scale, seed, R, T, rounds is not None, stream_name, classes, labels, fields, per_piece,
                        checkpoint)


def _build_stream(settings: DeepSettings) -> tuple:
    """Step 2: the base configuration (checked before any data is read), the stream, and the rounds
    (the ``ci`` preset cycles twice through a stream of any N); refuses a long run too short for T1."""
    from .. import deep

    base = deep.DeepConfig(**settings.fields)  # checks the overrides before any data is read
    if settings.stream == "digits-1v" and settings.scale == "ci":
        raise ValueError("stream='digits-1v' runs at the long or paper scale (random task order, T >= 5 T1)")
    try:
        stream = _deep_stream(settings.stream, settings.seed, settings.classes)
    except FileNotFoundError as error:  # a stream whose data is absent is a value this run cannot take
        raise ValueError(f"stream={settings.stream!r} needs data that is not in the data directory ({error}); "
                         f"set MOECL_DATA to a folder that has it (data_scripts/download.py)") from error
    T = settings.T
    if settings.scale == "ci" and not settings.rounds_given and stream.N != 5:
        T = DEEP_SCALES["ci"].rounds // 5 * stream.N
        base = base.replace(T=T)
    if settings.scale != "ci":
        largest = max(spec[1] for spec in settings.labels.values())
        T1 = base.replace(M=largest).T1
        if T < MIN_ROUNDS_PER_T1 * T1:
            raise ValueError(f"T={T} is too short to test termination: the {settings.scale} scale needs T >= "
                             f"{MIN_ROUNDS_PER_T1} x T1 = {MIN_ROUNDS_PER_T1 * T1} (T1 = {T1} for M = {largest})")
    _STREAM_CACHE.clear()
    _STREAM_CACHE[((settings.stream, settings.seed, settings.classes), os.environ.get("MOECL_DATA"))] = stream
    return stream, base, T


def _method_configs(settings: DeepSettings, base) -> dict:
    """Each method label's `moecl.deep.DeepConfig`: the base with the method, M and termination of its spec."""
    return {label: base.replace(method=spec[0], M=spec[1], **({"termination": spec[2]} if len(spec) > 2 else {}))
            for label, spec in settings.labels.items()}


def _plan_pieces(settings: DeepSettings, base) -> list[DeepPiece]:
    """Step 3: each method's seeds cut into pieces of ``seeds_per_piece``, each with its checkpoint file."""
    import torch

    threads = torch.get_num_threads()
    seeds, per_piece, checkpoint = settings.seeds, settings.per_piece, settings.checkpoint
    recipe = (settings.stream, settings.seed, settings.classes)
    pieces = []
    for label, config in _method_configs(settings, base).items():
        chunks = [tuple(seeds[i:i + per_piece]) for i in range(0, settings.R, per_piece)]
        for chunk in chunks:
            path = None
            if checkpoint is not None:
                os.makedirs(checkpoint, exist_ok=True)
                name = label if len(chunks) == 1 else f"{label}-seeds{chunk[0]}-{chunk[-1]}"
                path = os.path.join(checkpoint, f"{name}.safetensors")
            pieces.append(DeepPiece(len(pieces), label, config, recipe, chunk, path, threads))
    return pieces


def _run_pieces(pieces: list, progress: bool, function=None) -> dict:
    """Step 4: the pieces in this process, in order, or on the executor of `moecl.sweep.using`.

    ``function`` runs one piece (default `run_deep_piece`; `deep_paper` passes its own)."""
    function = run_deep_piece if function is None else function
    executor, _ = sweep.current()
    if executor is not None:
        return sweep.run_pieces(pieces, executor, progress, function=function)
    done = {}
    for piece in pieces:  # in order, each with its progress bar
        if progress:
            print(f"[{piece.number + 1}/{len(pieces)}] {piece.describe()}", file=sys.stderr, flush=True)
        done[piece.number] = function(piece, progress)
    return done


def _records_by_label(pieces: list, done: dict, labels) -> tuple[dict, dict]:
    """Each method label's records in piece order, and its wall time summed over its pieces (seconds)."""
    by_label: dict = {label: [] for label in labels}
    wall_times: dict = {}
    for piece in pieces:
        records, seconds = done[piece.number]
        by_label[piece.label].extend(records)
        wall_times[piece.label] = round(wall_times.get(piece.label, 0.0) + seconds, 3)
    return by_label, wall_times


def _summarise(by_label: dict, scenarios: list, T: int, scale: str) -> tuple[dict, dict]:
    """Step 5: the arrays of the results file (and their documentation) from each method's records."""
    from .. import deep

    arrays, docs = {}, {}
    for label, records in by_label.items():
        arrays[f"{label}/termination_round"] = np.array([r.termination_round for r in records])
        arrays[f"{label}/concentration"] = np.array([deep.summarise(r)["concentration"] for r in records])
        arrays[f"{label}/tasks"] = np.stack([np.asarray(r.tasks, dtype=np.int16) for r in records])
        arrays[f"{label}/experts"] = np.stack([np.asarray(r.experts, dtype=np.int16) for r in records])
        for scenario in scenarios + ["task-current"]:
            kind, rule = ("task", "current") if scenario == "task-current" else (scenario, "round")
            summaries = [deep.summarise(r, scenario=kind, rule=rule) for r in records]
            for key in _DEEP_KEYS:
                arrays[f"{label}/{scenario}/{key}"] = np.array([s[key] for s in summaries])
            matrices = np.stack([deep.accuracy_matrix(r, kind, rule) for r in records])
            arrays[f"{label}/{scenario}/accuracy_curve"] = np.array(
                [[np.mean(m[t, :t + 1]) for t in range(T)] for m in matrices])
            if scale == "ci":
                arrays[f"{label}/{scenario}/accuracy_matrix"] = matrices
    docs["<label>/<scenario>/<metric>"] = (f"per seed, (R,): {', '.join(_DEEP_KEYS)} (moecl.deep.summarise); "
                                           "scenario task-current: task-incremental, current-predictor rule")
    docs["<label>/<scenario>/accuracy_curve"] = "per seed, (R, T): mean accuracy over the tasks seen after round t"
    if scale == "ci":
        docs["<label>/<scenario>/accuracy_matrix"] = "per seed, (R, T, T): accuracy on task i after round t (NaN: unseen)"
    docs["<label>/termination_round"] = "per seed, (R,): round the gate stopped (-1: never)"
    docs["<label>/concentration"] = "per seed, (R,): routing concentration over all rounds"
    docs["<label>/tasks"] = "per seed, (R, T): the task type of each round (the routing history, with experts)"
    docs["<label>/experts"] = "per seed, (R, T): the expert each round trained (moecl.metrics.routing_counts)"
    return arrays, docs


# deep-methods takes --set T=... (its presets' T is a default, checked against T1); the registry owns T
# for every other experiment.
EXPERIMENTS["deep-methods"].owns.pop("T", None)
