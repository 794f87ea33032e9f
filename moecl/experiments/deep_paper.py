"""`deep-paper`: the paper's own digits experiment (its Appendix A.4), as described (book chapter: the paper's digits experiment).

Three task types "is this digit a 1 / a 4 / a 7" (one-vs-rest, task-incremental; the
``digits-1v`` stream of `moecl.experiments.deep_methods`), each round a type drawn
uniformly and 100 of its training images, experts of the paper's network
(`moecl.deep.networks.PaperCNN`: two convolutional and three fully connected layers,
max-pooling after the first convolution only, one sigmoid output trained with binary
cross-entropy) and the gate of Algorithm 1. Methods (`PAPER_METHODS`): one network
fine-tuned in turn, and the gate with M = 3 and M = 5 experts, with and without early
termination. The run reuses the machinery of ``deep-methods`` (its settings, pieces,
executor and summary arrays); what it adds are the paper's network, its presets and two
routing summaries (`routing_switch_rate`, `expert_loads`).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from .. import metrics
from .._checks import check_int, check_seed
from ..results import make_header
from . import deep_methods
from .registry import EXPERIMENTS, Scale, experiment, resolve_scale


#: Methods of ``deep-paper``: label -> (DeepConfig.method, M[, termination]). **Book choice** of M: the
#: paper's text does not give the numbers of experts of its digits figure that the book could find; M = 3
#: is one expert per task type (N = 3), M = 5 has more experts than types ("more experts need not help").
PAPER_METHODS = {
    "finetune": ("finetune", 1),
    "gate-M3": ("gate", 3),
    "gate-M3-no-termination": ("gate", 3, "none"),
    "gate-M5": ("gate", 5),
    "gate-M5-no-termination": ("gate", 5, "none"),
}


#: Size presets of ``deep-paper``: ``ci`` (a few rounds of tiny networks: the mechanics only, seconds),
#: ``paper`` (the paper's T = 60) and ``long`` (T = 100 >= 5 T1 = 85 for M = 5, `deep_methods.MIN_ROUNDS_PER_T1`).
PAPER_SCALES = {"ci": Scale(replicates=2, rounds=6), "paper": Scale(replicates=10, rounds=60),
                "long": Scale(replicates=5, rounds=100)}


#: `moecl.deep.DeepConfig` fields of every method (**book choices** where the paper is silent, book/choices.md):
#: the paper's 100 samples per round, uniform task order and network; Adam, 5 epochs, batches of 20,
#: learning rate 5e-3, width 8 and the stream's 100 test images per type, as the stored ``deep-methods`` runs.
PAPER_FIELDS = dict(architecture="paper-cnn", task_order="random", samples_per_round=100, epochs=5, batch_size=20,
                    lr=5e-3, width=8, test_samples=None, device="cpu")


#: What the ``ci`` preset changes: tiny networks and batches, so that every method runs in about a second.
CI_FIELDS = dict(samples_per_round=20, epochs=1, batch_size=10, width=4, test_samples=20)


#: The stream: the one-vs-rest digits 1, 4, 7 of `deep_methods`' ``digits-1v`` (`paper_stream`).
STREAM = "digits-1v"


#: Test images per task type on MNIST (half of them the task's digit), as ``deep-methods``' ``digits-1v``.
#: scikit-learn's digits (the fallback without MNIST) have fewer than 50 test images of some digits: there every
#: test image of the digit and as many others are taken (about 90).
TEST_SAMPLES = 100


#: `moecl.deep.DeepConfig` fields the experiment owns: it sweeps them per method, and the stream is the paper's.
_OWNED = ("method", "M", "termination")


def routing_switch_rate(tasks, experts, start: int = 0) -> float:
    """Share of the rounds after ``start`` whose task type went to another expert than at its previous round.

    ``tasks``, ``experts``: one run's routing history (length T). Over the rounds
    ``start + 1 .. T`` (1-based) whose type occurred earlier in the run, the fraction routed
    to a different expert than that type's previous occurrence. 0 when the routing of each
    type has settled (one network; a frozen gate whose routing noise never flips a type);
    about ``1 - 1/M`` when routing ignores the task. NaN when no such round exists.
    """
    tasks, experts = np.asarray(tasks), np.asarray(experts)
    if tasks.shape != experts.shape or tasks.ndim != 1:
        raise ValueError(f"tasks {tasks.shape} and experts {experts.shape} must be 1-d and of one length")
    check_int("start", start, minimum=0)
    last: dict = {}
    switches = counted = 0
    for t, (n, m) in enumerate(zip(tasks.tolist(), experts.tolist())):
        if t >= start and n in last:
            counted += 1
            switches += last[n] != m
        last[n] = m
    return switches / counted if counted else float("nan")


def expert_loads(experts, M: int) -> np.ndarray:
    """The paper's expert load f_t^(m): the share of rounds 1..t routed to each expert, (T, M)."""
    experts = np.asarray(experts)
    if experts.ndim != 1 or (experts.size and (experts.min() < 0 or experts.max() >= M)):
        raise ValueError(f"experts must be 1-d with values in [0, {M}), got shape {experts.shape}")
    onehot = experts[:, None] == np.arange(M)
    return np.cumsum(onehot, axis=0) / np.arange(1, len(experts) + 1)[:, None]


#: The paper's figure-level claims the stored runs test, one row per M: (claim, array suffix, a, b, sign), read
#: from the paired differences a - b over seeds (`moecl.report.paired_verdict`, 95% t-interval): the claim holds
#: when the interval settles that sign (+1: above 0). The paper's round rule (scenario ``task``): each task scored by the expert that learned it, F_T and G_T on the
#: test loss (its forgetting and generalization error), A_T the mean final accuracy.
PAPER_CLAIMS = (
    ("termination stabilises the loads", "routing_switches", "gate-M{M}-no-termination", "gate-M{M}", 1),
    ("the mixture forgets less than one network (F_T)", "task/forgetting", "finetune", "gate-M{M}", 1),
    ("the mixture has a lower test error than one network (G_T)", "task/generalization", "finetune", "gate-M{M}", 1),
    ("the mixture is more accurate than one network (A_T)", "task/average_accuracy", "gate-M{M}", "finetune", 1),
)


#: "More experts need not help": the larger mixture minus the smaller, in G_T and A_T, with the sign that would
#: mean "better" (lower G_T: -1; higher A_T: +1); the claim holds unless the interval settles that sign.
MORE_EXPERTS_CLAIMS = (
    ("more experts need not help (G_T)", "task/generalization", -1),
    ("more experts need not help (A_T)", "task/average_accuracy", 1),
)


def detectable_difference(differences, power: float = 0.8) -> float:
    """The paired difference a two-sided 95% t-test over these seeds detects with probability ``power``.

    ``(t_{0.975, n-1} + t_{power, n-1}) sd / sqrt(n)`` for the n per-seed differences and their
    standard deviation sd: a claim "not settled" at this many seeds rules out effects about this large.
    """
    from scipy import stats

    differences = np.asarray(differences, dtype=float)
    n = len(differences)
    if n < 2:
        raise ValueError(f"a detectable difference needs at least 2 seeds, got {n}")
    return float((stats.t.ppf(0.975, n - 1) + stats.t.ppf(power, n - 1)) * differences.std(ddof=1) / math.sqrt(n))


def signed_rank_p(differences) -> float:
    """Two-sided p-value of Wilcoxon's signed-rank test that paired differences are centred on 0
    (``scipy.stats.wilcoxon``; zero differences dropped); 1.0 when every difference is 0."""
    from scipy import stats

    differences = np.asarray(differences, dtype=float)
    if not np.any(differences != 0):
        return 1.0
    return float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)


def paper_verdicts(arrays, experts=(3, 5)) -> list[dict]:
    """The paper's claims (`PAPER_CLAIMS`, `MORE_EXPERTS_CLAIMS`) tested on a stored ``deep-paper`` run.

    One dict per claim and M (the larger M for "more experts"): ``claim``, ``M``, ``a``, ``b`` (labels),
    ``key``, ``mean`` and ``half``
    (the paired a - b over seeds and the half-width of its 95% t-interval), ``sign`` (+1, -1, 0: not
    settled), ``holds`` (bool), ``detectable`` (the difference detected with 80% power,
    `detectable_difference`) and ``rank_p`` (`signed_rank_p`, a check on the t-interval where a few
    seeds dominate the spread, as in the test loss). Labels missing from ``arrays`` are skipped.
    """
    from .. import report

    rows = []

    def add(claim, M, a, b, key, holds_when=None, refuted_when=None):
        if f"{a}/{key}" not in arrays or f"{b}/{key}" not in arrays:
            return
        first, second = np.asarray(arrays[f"{a}/{key}"], float), np.asarray(arrays[f"{b}/{key}"], float)
        mean, half, sign = report.paired_verdict(first, second)
        holds = sign == holds_when if refuted_when is None else sign != refuted_when
        rows.append(dict(claim=claim, M=M, a=a, b=b, key=key, mean=mean, half=half, sign=sign, holds=bool(holds),
                         detectable=detectable_difference(first - second), rank_p=signed_rank_p(first - second)))

    for claim, key, a, b, direction in PAPER_CLAIMS:
        for M in experts:
            add(claim, M, a.format(M=M), b.format(M=M), key, holds_when=direction)
    small, large = min(experts), max(experts)
    for claim, key, better in MORE_EXPERTS_CLAIMS:
        add(claim, large, f"gate-M{large}", f"gate-M{small}", key, refuted_when=better)
    return rows


def load_paper_runs(scale: str, folder=None):
    """The stored ``deep-paper`` runs of ``scale`` as one: ``(headers, arrays)``, or None when none is stored.

    Reads every ``deep-paper-<scale>-seed<S>.npz`` of ``folder`` (default `moecl.report.results_folder`,
    ``$MOECL_RESULTS``), in the order of their first seeds, and joins their per-seed arrays along the
    seeds (every array of the experiment has the seeds first). The runs must be of one design (labels,
    rounds, configurations, data source) and of disjoint seeds; ValueError naming the file otherwise.
    """
    import re
    from pathlib import Path

    from ..report import results_folder
    from ..results import load_results

    folder = Path(folder if folder is not None else results_folder())
    pattern = re.compile(rf"deep-paper-{re.escape(scale)}-seed(\d+)\.npz")
    paths = sorted((int(match.group(1)), path) for path in folder.glob(f"deep-paper-{scale}-seed*.npz")
                   if (match := pattern.fullmatch(path.name)))
    if not paths:
        return None
    runs = [(path, *load_results(path)) for _, path in paths]
    first_path, first, _ = runs[0]
    seen: set = set()
    for path, header, _ in runs:
        for field in ("labels", "rounds", "configs", "source"):
            if header.get(field) != first.get(field):
                raise ValueError(f"{path}: its {field} differ from those of {first_path}; one design per scale")
        if seen & set(header["seeds"]):
            raise ValueError(f"{path}: seeds {sorted(seen & set(header['seeds']))} are stored twice")
        seen |= set(header["seeds"])
    arrays = {key: np.concatenate([run[2][key] for run in runs]) for key in runs[0][2]}
    return [header for _, header, _ in runs], arrays


def _routing_arrays(label: str, spec: tuple, arrays: dict, T: int, N: int) -> dict:
    """Per seed (R,): the switch rate and specialisation score over the second half of the rounds."""
    tasks, experts = arrays[f"{label}/tasks"], arrays[f"{label}/experts"]
    half = T // 2
    switches = np.array([routing_switch_rate(n, m, start=half) for n, m in zip(tasks, experts)])
    scores = np.array([metrics.specialisation_score(metrics.routing_counts(n[half:], m[half:], N, spec[1]))
                       if len(set(n[half:].tolist())) > 1 else float("nan") for n, m in zip(tasks, experts)])
    return {f"{label}/routing_switches": switches, f"{label}/specialisation": scores}


@experiment(
    "deep-paper",
    "the paper's own digits experiment (Appendix A.4): digits 1/4/7 one-vs-rest, 100 samples a round, its "
    "five-layer sigmoid network; one network fine-tuned in turn against the gate with M = 3 and 5, with and "
    "without termination (--scale paper: T = 60, 10 seeds; --scale long: T = 100, 5 seeds a run)",
    owns={name: "deep-paper sweeps it per method" for name in _OWNED},
    presets=PAPER_SCALES,
    device=True,
    needs_data=True,
    checkpoints=True,
)
def deep_paper(scale: str, seed: int, replicates=None, progress: bool = False, rounds=None, overrides=None):
    """The paper's digits experiment from the command line (book/deep_paper.md).

    Overrides: ``methods`` (comma-separated labels of `PAPER_METHODS`), ``seeds_per_piece``
    (default `deep_methods.DEEP_PIECE_SEEDS`), ``checkpoint`` (a folder; the command line
    passes ``<results file>.ckpt``), and any `moecl.deep.DeepConfig` field but those the
    experiment sweeps (`_OWNED`), ``T`` included. Replicate k is seed ``seed + k``; the
    stream is ``digits-1v`` of `deep_methods` built from seed ``seed``. The ``long`` preset
    is refused in one line if T is below ``deep_methods.MIN_ROUNDS_PER_T1`` times the T1 of
    its largest M.

    Arrays: those of ``deep-methods`` (`deep_methods._summarise`, task-incremental scenario),
    per method label, plus ``<label>/routing_switches`` and ``<label>/specialisation`` (R,):
    `routing_switch_rate` and `moecl.metrics.specialisation_score` over the second half of
    the rounds.
    """
    settings = _settings(scale, seed, replicates, rounds, overrides)
    started = time.perf_counter()
    stream, base, T, recipe = _build_stream(settings)
    pieces = [dataclasses.replace(piece, stream=recipe) for piece in deep_methods._plan_pieces(settings, base)]
    done = deep_methods._run_pieces(pieces, progress, function=run_paper_piece)
    by_label, wall_times = deep_methods._records_by_label(pieces, done, settings.labels)
    arrays, docs = deep_methods._summarise(by_label, ["task"], T, scale)
    for label, spec in settings.labels.items():
        arrays.update(_routing_arrays(label, spec, arrays, T, stream.N))
    docs["<label>/routing_switches"] = ("per seed, (R,): share of the rounds of the second half whose type went to "
                                        "another expert than at its previous round (deep_paper.routing_switch_rate)")
    docs["<label>/specialisation"] = ("per seed, (R,): I(type; expert) / H(type) over the second half of the rounds "
                                      "(moecl.metrics.specialisation_score)")
    configs = {label: dataclasses.asdict(config)
               for label, config in deep_methods._method_configs(settings, base).items()}
    header = make_header(
        "deep-paper", scale, settings.seed, settings.R, time.perf_counter() - started,
        description=EXPERIMENTS["deep-paper"].description,
        rounds=T, labels=list(settings.labels), configs=configs, stream=settings.stream, source=stream.source,
        seeds=settings.seeds, seeds_per_piece=settings.per_piece, simulation_wall_times=wall_times, arrays=docs,
        scenarios=["task", "task-current"],
    )
    return header, arrays


def _settings(scale: str, seed, replicates, rounds, overrides) -> deep_methods.DeepSettings:
    """The call checked, as the `deep_methods.DeepSettings` its machinery runs."""
    from .. import deep

    if scale not in PAPER_SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(PAPER_SCALES)}")
    overrides = dict(overrides or {})
    checkpoint = overrides.pop("checkpoint", None)
    chosen = overrides.pop("methods", None)
    per_piece = check_int("seeds_per_piece", overrides.pop("seeds_per_piece", deep_methods.DEEP_PIECE_SEEDS),
                          minimum=1)
    known = {f.name for f in dataclasses.fields(deep.DeepConfig)}
    for field_name in overrides:
        if field_name in _OWNED:
            raise ValueError(f"--set {field_name}: deep-paper sets {', '.join(_OWNED)} itself, per method")
        if field_name not in known:
            raise ValueError(f"--set {field_name}: deep-paper takes methods, seeds_per_piece and the DeepConfig "
                             f"fields but {', '.join(_OWNED)}")
    if "T" in overrides and rounds is not None:
        raise ValueError("give the rounds once: --set T=... or rounds, not both")
    seed = check_seed(seed)
    preset = PAPER_SCALES[scale]
    rounds_given = "T" in overrides or rounds is not None
    rounds = overrides.pop("T", rounds)
    R, T = resolve_scale("ci", preset.replicates if replicates is None else replicates,
                         preset.rounds if rounds is None else rounds)
    labels = dict(PAPER_METHODS)
    if chosen is not None:
        wanted = [name.strip() for name in str(chosen).split(",") if name.strip()]
        unknown = [name for name in wanted if name not in labels]
        if unknown or not wanted:
            raise ValueError(f"methods={chosen!r}: choose labels from {', '.join(labels)}")
        labels = {label: spec for label, spec in labels.items() if label in wanted}
    fields = dict(PAPER_FIELDS, T=T, **(CI_FIELDS if scale == "ci" else {}))
    fields.update(overrides)
    return deep_methods.DeepSettings(scale, seed, R, T, rounds_given, STREAM, deep_methods._TINY_IMAGENET_CLASSES,
                                     labels, fields, per_piece, checkpoint)


def paper_stream(seed: int, test_samples: int | None = TEST_SAMPLES, dataset=None):
    """The paper's three one-vs-rest tasks (digits 1, 4, 7) of `moecl.deep.streams.one_vs_rest_tasks`.

    **Book choices** (book/choices.md): a task's training pool is every training image of its
    digit and as many of the other nine digits, spread evenly over them, so a round's 100
    images, drawn from the pool without replacement, are about half the digit (the paper
    does not say; MNIST's natural share would be about 10 %). ``test_samples`` images per
    task (``None``: every test image of the digit and as many others), half of them the digit.
    ``dataset``: `moecl.deep.datasets.load_digits` (MNIST, else scikit-learn's digits) if None.
    """
    from ..deep import streams

    return streams.one_vs_rest_tasks(dataset, samples_per_task=None, test_samples_per_task=test_samples, seed=seed)


def run_paper_piece(piece, progress: bool = False) -> tuple[list, float]:
    """`deep_methods.run_deep_piece` of a piece whose ``stream`` is a `paper_stream` recipe
    ``(STREAM, seed, test_samples)``, built once per process and data directory."""
    import os

    key = (piece.stream, os.environ.get("MOECL_DATA"))
    with deep_methods._PIECE_LOCK:
        if key not in deep_methods._STREAM_CACHE:
            deep_methods._STREAM_CACHE.clear()  # one stream at a time: a stream holds its images
            deep_methods._STREAM_CACHE[key] = paper_stream(piece.stream[1], piece.stream[2])
        return deep_methods._run_deep_piece(piece, progress)


def _build_stream(settings: deep_methods.DeepSettings) -> tuple:
    """The base configuration (checked before any data is read), the paper's stream, T and the stream's
    recipe for the pieces; refuses a ``long`` run too short for the T1 of its largest M (the paper's own
    T = 60 is taken as it is)."""
    import os

    from .. import deep
    from ..deep import datasets

    base = deep.DeepConfig(**settings.fields)
    if settings.scale == "long":
        largest = max(spec[1] for spec in settings.labels.values())
        T1 = base.replace(M=largest).T1
        if settings.T < deep_methods.MIN_ROUNDS_PER_T1 * T1:
            raise ValueError(f"T={settings.T} is too short to test termination: the long scale needs T >= "
                             f"{deep_methods.MIN_ROUNDS_PER_T1} x T1 = {deep_methods.MIN_ROUNDS_PER_T1 * T1} "
                             f"(T1 = {T1} for M = {largest})")
    try:
        dataset = datasets.load_digits()
    except FileNotFoundError as error:
        raise ValueError(f"the paper's digits need MNIST ({error}); set MOECL_DATA to a folder that has it "
                         "(data_scripts/download.py)") from error
    test_samples = TEST_SAMPLES if dataset.source.startswith("MNIST") else None
    recipe = (STREAM, settings.seed, test_samples)
    stream = paper_stream(settings.seed, test_samples, dataset)
    deep_methods._STREAM_CACHE.clear()  # the pieces of this process reuse it (run_paper_piece)
    deep_methods._STREAM_CACHE[(recipe, os.environ.get("MOECL_DATA"))] = stream
    return stream, base, settings.T, recipe


# deep-paper takes --set T=... (its presets' T is a default); the registry owns T for the linear experiments.
EXPERIMENTS["deep-paper"].owns.pop("T", None)
