"""Continual-learning task streams cut from the image data sets (book chapters: deep experts, SEED).

`one_vs_rest_tasks` builds the paper's digit tasks; `class_split_tasks` cuts any
data set into tasks over disjoint class subsets, and `cifar10_tasks`,
`cifar100_tasks` (10-class or superclass tasks) and `tiny_imagenet_tasks` apply it.
`build_task_stream` picks one by name. Labels follow one of two scenarios:

* ``"task"`` (task-incremental): a task's labels are the positions 0..k-1 of its
  classes in the task's class list; an expert needs k outputs.
* ``"class"`` (class-incremental): labels are global, numbered in order of first
  appearance over the stream (task 0's classes are 0..k-1, task 1's k..2k-1, ...);
  an expert needs as many outputs as the stream has classes.

The one-vs-rest digit tasks are binary: label 1 for the task's digit, 0 for the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._checks import check_seed
from .datasets import (
    PAPER_DIGITS,
    PAPER_SAMPLES_PER_TASK,
    TINY_IMAGENET_FOLDER,
    ImageDataset,
    load_cifar10,
    load_cifar100,
    load_digits,
    load_tiny_imagenet,
    resolve_data_dir,
)
from .readers import read_text


SCENARIOS = ("task", "class")


@dataclass(frozen=True, eq=False)
class Task:
    """One task type of a continual-learning stream.

    ``classes`` are the data set's class indices the task covers (for a one-vs-rest task,
    the single positive digit), ``class_names`` their names. ``train_labels`` and
    ``test_labels`` are the labels an expert learns (see the module docstring for the
    scenarios); ``train_dataset_labels`` and ``test_dataset_labels`` keep the data set's
    own class indices, so any other labelling can be derived. Arrays are read-only.
    """

    index: int
    name: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    train_dataset_labels: np.ndarray
    test_dataset_labels: np.ndarray

    def __post_init__(self):
        for field in ("train_images", "train_labels", "test_images", "test_labels",
                      "train_dataset_labels", "test_dataset_labels"):
            getattr(self, field).flags.writeable = False

    def __repr__(self) -> str:
        return (f"Task({self.index}, {self.name!r}, train={len(self.train_labels)}, "
                f"test={len(self.test_labels)})")


@dataclass(frozen=True, eq=False)
class TaskStream:
    """The N task types of a stream, with what an expert needs to know about them.

    ``scenario`` is ``"one-vs-rest"``, ``"task"`` or ``"class"``; ``num_outputs`` is the
    width of an expert's output layer (2, classes per task, or all classes of the
    stream); ``class_names`` names the outputs in the class-incremental scenario (all
    classes in label order) and is the per-task names otherwise. ``source`` is the
    data set's `ImageDataset.source`.
    """

    name: str
    tasks: tuple[Task, ...]
    scenario: str
    num_outputs: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    source: str
    seed: int

    @property
    def N(self) -> int:
        """Number of task types (N in the paper)."""
        return len(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, n: int) -> Task:
        return self.tasks[n]

    def __iter__(self):
        return iter(self.tasks)

    def __repr__(self) -> str:
        return (f"TaskStream({self.name!r}, N={self.N}, scenario={self.scenario!r}, "
                f"outputs={self.num_outputs}, image_shape={self.image_shape}, source={self.source!r})")


def _check_count(name: str, value, allow_none: bool = True, minimum: int = 1):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}" + (" or None" if allow_none else ""))
    return int(value)


def _balanced_draw(rng: np.random.Generator, groups: Sequence[np.ndarray], total: int | None,
                   what: str) -> np.ndarray:
    """Draw ``total`` indices spread as evenly as possible over ``groups`` (all if None).

    Each group gets ``total // len(groups)`` indices and a seeded random choice of groups
    one more, so group sizes differ by at most one. Raises ValueError if a group is short.
    """
    if total is None:
        chosen = [rng.permutation(group) for group in groups]
    else:
        base, extra = divmod(total, len(groups))
        counts = np.full(len(groups), base)
        counts[rng.choice(len(groups), size=extra, replace=False)] += 1
        chosen = []
        for group, count in zip(groups, counts):
            if count > len(group):
                raise ValueError(f"{what}: asked for {count} samples of a class that has only {len(group)}")
            chosen.append(rng.choice(group, size=count, replace=False))
    indices = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return rng.permutation(indices)


def one_vs_rest_tasks(
    dataset: ImageDataset | None = None,
    digits: Sequence[int] = PAPER_DIGITS,
    samples_per_task: int | None = PAPER_SAMPLES_PER_TASK,
    test_samples_per_task: int | None = None,
    positive_fraction: float = 0.5,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> TaskStream:
    """The paper's digit tasks: task n tells digit ``digits[n]`` (label 1) from all others (label 0).

    The paper's deep experiment (book chapter: deep experts): digits 1, 4, 7 and 100 training samples per task. ``dataset``
    defaults to `load_digits` (MNIST, else scikit-learn's digits). **Book choice**:
    a fraction ``positive_fraction`` of a task's samples are its digit and the rest are
    spread evenly over the other nine digits, so the tasks are balanced rather than 10 %
    positive. ``test_samples_per_task=None`` takes every test image of the task's digit
    and as many negatives, spread evenly over the other digits. Draws are seeded by
    ``seed`` (one child stream per task), so the same seed gives the same tasks.
    """
    if dataset is None:
        dataset = load_digits(data_dir)
    digits = tuple(digits)
    if not digits or len(set(digits)) != len(digits) or any(
            isinstance(d, bool) or not isinstance(d, (int, np.integer)) or not 0 <= d < dataset.num_classes
            for d in digits):
        raise ValueError(f"digits={digits!r} must be distinct class indices 0..{dataset.num_classes - 1}")
    samples_per_task = _check_count("samples_per_task", samples_per_task, minimum=2)
    test_samples_per_task = _check_count("test_samples_per_task", test_samples_per_task, minimum=2)
    if isinstance(positive_fraction, bool) or not isinstance(positive_fraction, (int, float)) or not (
            0.0 < positive_fraction < 1.0):
        raise ValueError(f"positive_fraction={positive_fraction!r} must lie strictly between 0 and 1")
    seed = check_seed(seed)

    def draw(rng, labels, positive, total, what):
        groups = [np.flatnonzero(labels == k) for k in range(dataset.num_classes)]
        negatives = [group for k, group in enumerate(groups) if k != positive]
        if total is None:
            n_positive = len(groups[positive])
            n_negative = n_positive
        else:
            n_positive = int(round(positive_fraction * total))
            n_positive = min(max(n_positive, 1), total - 1)
            n_negative = total - n_positive
        if n_positive > len(groups[positive]):
            raise ValueError(f"{what}: {n_positive} samples of digit {positive} asked for, "
                             f"{len(groups[positive])} available in {dataset.source}")
        pos = rng.choice(groups[positive], size=n_positive, replace=False)
        neg = _balanced_draw(rng, negatives, n_negative, what)
        return rng.permutation(np.concatenate([pos, neg]))

    tasks = []
    for n, (digit, ss) in enumerate(zip(digits, np.random.SeedSequence(seed).spawn(len(digits)))):
        rng = np.random.default_rng(ss)
        train = draw(rng, dataset.train_labels, digit, samples_per_task, "samples_per_task")
        test = draw(rng, dataset.test_labels, digit, test_samples_per_task, "test_samples_per_task")
        tasks.append(Task(
            index=n,
            name=f"digit {digit} vs rest",
            classes=(int(digit),),
            class_names=(dataset.class_names[digit],),
            train_images=dataset.train_images[train],
            train_labels=(dataset.train_labels[train] == digit).astype(np.int64),
            test_images=dataset.test_images[test],
            test_labels=(dataset.test_labels[test] == digit).astype(np.int64),
            train_dataset_labels=dataset.train_labels[train],
            test_dataset_labels=dataset.test_labels[test],
        ))
    return TaskStream(
        name=f"{dataset.name} one-vs-rest {'/'.join(str(d) for d in digits)}",
        tasks=tuple(tasks),
        scenario="one-vs-rest",
        num_outputs=2,
        class_names=("rest", "digit"),
        image_shape=dataset.image_shape,
        source=dataset.source,
        seed=seed,
    )


def class_split_tasks(
    dataset: ImageDataset,
    class_groups: Sequence[Sequence[int]],
    scenario: str = "task",
    samples_per_task: int | None = None,
    test_samples_per_task: int | None = None,
    seed: int = 0,
    name: str | None = None,
) -> TaskStream:
    """Tasks over disjoint class subsets: task n classifies the classes ``class_groups[n]``.

    ``scenario`` is ``"task"`` (labels 0..k-1 within each task) or ``"class"`` (labels
    numbered over the whole stream in order of appearance). ``samples_per_task`` (None:
    all) training and ``test_samples_per_task`` (None: all) test samples are drawn
    class-balanced (class counts differ by at most one), seeded by ``seed`` with one child
    stream per task, and shuffled.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario={scenario!r} must be one of {SCENARIOS}")
    groups = [tuple(int(c) for c in group) for group in class_groups]
    flat = [c for group in groups for c in group]
    if not groups or any(not group for group in groups):
        raise ValueError(f"class_groups={class_groups!r} must be non-empty groups of class indices")
    if len(set(flat)) != len(flat) or min(flat) < 0 or max(flat) >= dataset.num_classes:
        raise ValueError(f"class_groups={class_groups!r} must be disjoint class indices 0..{dataset.num_classes - 1}")
    samples_per_task = _check_count("samples_per_task", samples_per_task)
    test_samples_per_task = _check_count("test_samples_per_task", test_samples_per_task)
    seed = check_seed(seed)

    global_label = {c: position for position, c in enumerate(flat)}
    tasks = []
    for n, (group, ss) in enumerate(zip(groups, np.random.SeedSequence(seed).spawn(len(groups)))):
        rng = np.random.default_rng(ss)
        train = _balanced_draw(rng, [np.flatnonzero(dataset.train_labels == c) for c in group],
                               samples_per_task, "samples_per_task")
        test = _balanced_draw(rng, [np.flatnonzero(dataset.test_labels == c) for c in group],
                              test_samples_per_task, "test_samples_per_task")
        local = {c: position for position, c in enumerate(group)}
        relabel = global_label if scenario == "class" else local
        names = tuple(dataset.class_names[c] for c in group)
        tasks.append(Task(
            index=n,
            name=", ".join(names),
            classes=group,
            class_names=names,
            train_images=dataset.train_images[train],
            train_labels=np.array([relabel[c] for c in dataset.train_labels[train]], dtype=np.int64),
            test_images=dataset.test_images[test],
            test_labels=np.array([relabel[c] for c in dataset.test_labels[test]], dtype=np.int64),
            train_dataset_labels=dataset.train_labels[train],
            test_dataset_labels=dataset.test_labels[test],
        ))
    if scenario == "class":
        num_outputs, class_names = len(flat), tuple(dataset.class_names[c] for c in flat)
    else:
        num_outputs = max(len(group) for group in groups)
        class_names = tuple(f"class {k} of the task" for k in range(num_outputs))
    return TaskStream(
        name=name or f"{dataset.name} {len(groups)} tasks",
        tasks=tuple(tasks),
        scenario=scenario,
        num_outputs=num_outputs,
        class_names=class_names,
        image_shape=dataset.image_shape,
        source=dataset.source,
        seed=seed,
    )


def _consecutive_groups(classes: Sequence[int], classes_per_task: int, parameter: str) -> list[list[int]]:
    classes_per_task = _check_count("classes_per_task", classes_per_task, allow_none=False)
    if len(classes) % classes_per_task:
        raise ValueError(f"classes_per_task={classes_per_task} does not divide the {len(classes)} classes "
                         f"of {parameter}")
    return [list(classes[i : i + classes_per_task]) for i in range(0, len(classes), classes_per_task)]


def _class_order(num_classes: int, shuffle_classes: bool, seed: int) -> list[int]:
    """0..K-1, or a permutation seeded by ``seed`` (its own stream, apart from the sample draws)."""
    if not shuffle_classes:
        return list(range(num_classes))
    rng = np.random.default_rng(np.random.SeedSequence([check_seed(seed), 1]))
    return [int(c) for c in rng.permutation(num_classes)]


def cifar10_tasks(
    dataset: ImageDataset | None = None,
    classes_per_task: int = 2,
    scenario: str = "task",
    shuffle_classes: bool = False,
    samples_per_task: int | None = None,
    test_samples_per_task: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> TaskStream:
    """Split CIFAR-10: by default five two-class tasks (airplane/automobile, bird/cat, ...).

    ``shuffle_classes`` assigns classes to tasks by a permutation seeded by ``seed``
    instead of the official class order. Other arguments as in `class_split_tasks`.
    """
    dataset = dataset if dataset is not None else load_cifar10(data_dir)
    order = _class_order(dataset.num_classes, shuffle_classes, seed)
    groups = _consecutive_groups(order, classes_per_task, "CIFAR-10")
    return class_split_tasks(dataset, groups, scenario, samples_per_task, test_samples_per_task, seed,
                             name=f"split CIFAR-10 ({len(groups)} x {classes_per_task} classes)")


def cifar100_tasks(
    dataset: ImageDataset | None = None,
    grouping: str = "classes",
    classes_per_task: int = 10,
    scenario: str = "task",
    shuffle_classes: bool = False,
    samples_per_task: int | None = None,
    test_samples_per_task: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
) -> TaskStream:
    """Split CIFAR-100 into ``grouping="classes"`` tasks of ``classes_per_task`` fine classes
    (default ten 10-class tasks) or ``grouping="superclass"`` tasks (20 tasks, one per
    superclass, each over that superclass's five fine classes). Labels are over fine classes.
    The superclass grouping is the **book choice** of ``deep-methods`` (``--set stream=cifar100``;
    book/choices.md, the deep experiments).
    """
    dataset = dataset if dataset is not None else load_cifar100(data_dir)
    if grouping == "classes":
        order = _class_order(dataset.num_classes, shuffle_classes, seed)
        groups = _consecutive_groups(order, classes_per_task, "CIFAR-100")
        name = f"split CIFAR-100 ({len(groups)} x {classes_per_task} classes)"
    elif grouping == "superclass":
        if dataset.train_coarse_labels is None:
            raise ValueError(f"grouping='superclass' needs superclass labels, which {dataset.source} lacks")
        coarse_of = {}
        for fine, coarse in zip(dataset.train_labels, dataset.train_coarse_labels):
            coarse_of.setdefault(int(fine), int(coarse))
        order = _class_order(len(dataset.coarse_class_names), shuffle_classes, seed)
        groups = [sorted(f for f, c in coarse_of.items() if c == superclass) for superclass in order]
        groups = [group for group in groups if group]
        name = f"CIFAR-100 superclass tasks ({len(groups)} superclasses)"
    else:
        raise ValueError(f"grouping={grouping!r} must be 'classes' or 'superclass'")
    stream = class_split_tasks(dataset, groups, scenario, samples_per_task, test_samples_per_task, seed, name=name)
    if grouping == "superclass":  # name each task by its superclass
        coarse_names = dataset.coarse_class_names
        tasks = []
        for task in stream.tasks:
            superclass = int(dataset.train_coarse_labels[dataset.train_labels == task.classes[0]][0])
            tasks.append(Task(**{**task.__dict__, "name": f"{coarse_names[superclass]}: {task.name}"}))
        stream = TaskStream(**{**stream.__dict__, "tasks": tuple(tasks)})
    return stream


def tiny_imagenet_tasks(
    num_classes: int | None = None,
    classes_per_task: int = 5,
    scenario: str = "task",
    shuffle_classes: bool = False,
    samples_per_task: int | None = None,
    test_samples_per_task: int | None = None,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    dataset: ImageDataset | None = None,
) -> TaskStream:
    """Tiny ImageNet class-subset tasks: the first ``num_classes`` classes of ``wnids.txt``
    (None: all) in tasks of ``classes_per_task`` classes (default 5).

    Only the chosen classes are decoded (`load_tiny_imagenet` with ``classes``). With
    ``shuffle_classes`` the classes are a seeded random choice of ``wnids.txt``.
    """
    if dataset is None:
        root = resolve_data_dir(data_dir)
        wnids_path = root / TINY_IMAGENET_FOLDER / "wnids.txt"
        if not wnids_path.is_file():
            raise FileNotFoundError(f"Tiny ImageNet not found: no {wnids_path}")
        total = len([line for line in read_text(wnids_path).splitlines() if line.strip()])
        num_classes = _check_count("num_classes", num_classes)
        if num_classes is not None and num_classes > total:
            raise ValueError(f"num_classes={num_classes} exceeds the {total} classes of {wnids_path}")
        chosen = _class_order(total, shuffle_classes, seed)[: num_classes or total]
        dataset = load_tiny_imagenet(root, classes=chosen)
        order = list(range(len(chosen)))
    else:
        num_classes = _check_count("num_classes", num_classes) or dataset.num_classes
        order = _class_order(dataset.num_classes, shuffle_classes, seed)[:num_classes]
    groups = _consecutive_groups(order, classes_per_task, "Tiny ImageNet")
    return class_split_tasks(dataset, groups, scenario, samples_per_task, test_samples_per_task, seed,
                             name=f"Tiny ImageNet ({len(groups)} x {classes_per_task} classes)")


#: Task-stream builders by name (see `build_task_stream`).
TASK_STREAMS = {
    "digits": one_vs_rest_tasks,
    "cifar10": cifar10_tasks,
    "cifar100": cifar100_tasks,
    "cifar100-superclass": lambda **kw: cifar100_tasks(grouping="superclass", **kw),
    "tiny-imagenet": tiny_imagenet_tasks,
}


def build_task_stream(name: str, **kwargs) -> TaskStream:
    """Build a task stream by name: ``digits``, ``cifar10``, ``cifar100``,
    ``cifar100-superclass`` or ``tiny-imagenet``; keyword arguments go to the builder."""
    if name not in TASK_STREAMS:
        raise ValueError(f"name={name!r} is not one of {sorted(TASK_STREAMS)}")
    return TASK_STREAMS[name](**kwargs)
