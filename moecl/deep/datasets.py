"""Real image data for the deep experiments: the data directory and the loaders (book chapter: deep experts).

The paper carries its linear analysis to deep networks on MNIST (three one-vs-rest
tasks: digits 1, 4, 7; 100 samples per task), CIFAR-10, CIFAR-100 and Tiny ImageNet.
This module reads those data sets from the files their authors publish, with plain
numpy and Pillow (no torchvision), and `moecl.deep.streams` cuts them into continual-learning tasks.

Data directory
--------------
Every loader takes ``data_dir``; when it is ``None`` the directory is the
``MOECL_DATA`` environment variable, else ``~/.cache/moecl`` (`resolve_data_dir`).
``data_scripts/download.py`` fills it with the official files::

    <data_dir>/mnist/train-images-idx3-ubyte.gz        (or the raw, un-gzipped files)
    <data_dir>/cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta
    <data_dir>/cifar-100-python/train, test, meta
    <data_dir>/tiny-imagenet-200/wnids.txt, words.txt, train/<wnid>/images/*.JPEG,
                                 val/val_annotations.txt, val/images/*.JPEG

Loaders
-------
`load_mnist`, `load_cifar10`, `load_cifar100`, `load_tiny_imagenet`,
`load_sklearn_digits` and `load_digits` (MNIST when the directory has it, otherwise
the 8 x 8 handwritten digits that ship with scikit-learn) each return an
`ImageDataset`: float32 images ``N x C x H x W`` in [0, 1], int64 labels, class names
and a ``source`` string saying which data it is. A missing file raises
`FileNotFoundError`, an unreadable one (permissions) `PermissionError` and a corrupt,
truncated or implausible one `DataError` (a `ValueError`), each in one line naming the
path; nothing is cached, so a failed load leaves no half-loaded data behind.

Robustness: stray files beside the official ones (``data_batch_1.bak``, ``.part``) are
ignored; sizes are checked before anything is allocated (IDX headers whose sizes
overflow, gzip members that decompress to more than the format allows, images larger
than `MAX_IMAGE_PIXELS`, CIFAR arrays larger than their file could hold); the CIFAR
unpickler admits numpy arrays and nothing else; Tiny ImageNet class ids and annotation
paths cannot leave the data set's folder.

Data sources are explicit: when ``MOECL_DATA`` is set but missing or holds no data set,
`check_data_dir` refuses (`DataDirError`) and `load_digits` does not fall back to
scikit-learn's digits; the fallback, where allowed (no ``MOECL_DATA``), says so on
stderr and in the data set's ``source``.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

# The readers of the file formats; their limits and `DataError` are part of this module's interface.
from ..errors import DataDirError
from .readers import MAX_IDX_VALUES, MAX_IMAGE_PIXELS, DataError, open_binary, read_cifar_pickle, read_idx, read_rgb
from .readers import read_text

__all__ = [
    "CIFAR100_FOLDER", "CIFAR10_FOLDER", "DATASET_FOLDERS", "DATA_ENV", "DEFAULT_DATA_DIR", "DataDirError",
    "DataError", "ImageDataset", "LOADERS", "MAX_IDX_VALUES", "MAX_IMAGE_PIXELS", "MNIST_FILES", "MNIST_FOLDER",
    "PAPER_DIGITS", "PAPER_SAMPLES_PER_TASK", "TINY_IMAGENET_FOLDER", "check_data_dir", "data_dir_is_explicit",
    "find_mnist", "load_cifar10", "load_cifar100", "load_dataset", "load_digits", "load_mnist", "load_sklearn_digits",
    "load_tiny_imagenet", "read_cifar_pickle", "read_idx", "resolve_data_dir",
]


#: Environment variable naming the data directory.
DATA_ENV = "MOECL_DATA"


#: Data directory used when neither an argument nor `DATA_ENV` gives one.
DEFAULT_DATA_DIR = Path("~/.cache/moecl")


#: The digits of the paper's one-vs-rest tasks (book chapter: deep experts).
PAPER_DIGITS = (1, 4, 7)


#: Training samples per one-vs-rest task in the paper.
PAPER_SAMPLES_PER_TASK = 100


MNIST_FOLDER = "mnist"


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


CIFAR10_FOLDER = "cifar-10-batches-py"


CIFAR100_FOLDER = "cifar-100-python"


TINY_IMAGENET_FOLDER = "tiny-imagenet-200"


#: The folders (inside the data directory) of the data sets the loaders read.
DATASET_FOLDERS = (MNIST_FOLDER, "MNIST", CIFAR10_FOLDER, CIFAR100_FOLDER, TINY_IMAGENET_FOLDER)


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """An image classification data set with its official train/test split.

    Images are float32 arrays ``N x C x H x W`` with values in [0, 1]; labels are int64
    indices into ``class_names``. ``source`` says which data this is and where it came
    from (e.g. ``"MNIST from /data/mnist"``). CIFAR-100 also has superclass labels
    (``train_coarse_labels``, ``test_coarse_labels``, ``coarse_class_names``); other
    data sets leave them ``None``. Arrays are read-only.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    train_coarse_labels: np.ndarray | None = None
    test_coarse_labels: np.ndarray | None = None
    coarse_class_names: tuple[str, ...] | None = None

    def __post_init__(self):
        for field in ("train_images", "train_labels", "test_images", "test_labels",
                      "train_coarse_labels", "test_coarse_labels"):
            array = getattr(self, field)
            if array is not None:
                array.flags.writeable = False

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train_images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self) -> str:
        return (f"ImageDataset({self.name!r}, train={self.train_images.shape}, "
                f"test={self.test_images.shape}, classes={self.num_classes}, source={self.source!r})")


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$MOECL_DATA``, else ``~/.cache/moecl``."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_ENV) or DEFAULT_DATA_DIR
    return Path(data_dir).expanduser()


def data_dir_is_explicit() -> bool:
    """Whether ``MOECL_DATA`` is set (then the data must be there: no fallback)."""
    return bool(os.environ.get(DATA_ENV))


def check_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory, checked: ``MOECL_DATA`` (or ``data_dir``) must be a folder holding a data set.

    Raises `DataDirError` (a `FileNotFoundError`), naming the folder, when it is missing,
    not a folder, or holds none of the data sets' folders (`DATASET_FOLDERS`) nor MNIST's
    files. Without ``data_dir`` and ``MOECL_DATA`` the default folder is returned unchecked.
    """
    if data_dir is None and not data_dir_is_explicit():
        return resolve_data_dir()
    root = resolve_data_dir(data_dir)
    where = f"{DATA_ENV}={root}" if data_dir is None else str(root)
    if not root.exists():
        raise DataDirError(f"{where} does not exist")
    if not root.is_dir():
        raise DataDirError(f"{where} is not a folder")
    if not any((root / name).is_dir() for name in DATASET_FOLDERS) and find_mnist(root) is None:
        raise DataDirError(f"{where} holds no data set (none of {', '.join(DATASET_FOLDERS)}); "
                           "fill it with data_scripts/download.py")
    return root


def _to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 in [0, 1]."""
    return images.astype(np.float32) / np.float32(255.0)


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{path}: labels outside 0..{num_classes - 1} "
                         f"(found {labels.min()}..{labels.max()}); the file is corrupt")
    return labels


def _mnist_path(folder: Path, stem: str) -> Path | None:
    """The gzip or raw version of one MNIST file in ``folder``, or None."""
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_mnist(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The folder holding MNIST's IDX files, or None if no MNIST file is there.

    Looks in ``<data_dir>/mnist``, then torchvision's ``<data_dir>/MNIST/raw``, then
    ``<data_dir>`` itself. A folder with some but not all four files is returned (so
    that `load_mnist` reports the missing one rather than falling back silently).
    """
    root = resolve_data_dir(data_dir)
    for folder in (root / MNIST_FOLDER, root / "MNIST" / "raw", root):
        if any(_mnist_path(folder, stem) for stem in MNIST_FILES.values()):
            return folder
    return None


def load_mnist(data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """MNIST (60,000 train / 10,000 test, 1 x 28 x 28) from its official IDX files."""
    root = resolve_data_dir(data_dir)
    folder = find_mnist(root)
    if folder is None:
        raise FileNotFoundError(f"MNIST not found in {root} (looked for {MNIST_FILES['train_images']}.gz "
                                f"in {root / MNIST_FOLDER}, {root / 'MNIST' / 'raw'} and {root})")
    arrays = {}
    for key, stem in MNIST_FILES.items():
        path = _mnist_path(folder, stem)
        if path is None:
            raise FileNotFoundError(f"MNIST file missing: {folder / (stem + '.gz')} (nor the raw {stem})")
        arrays[key] = (read_idx(path), path)
    for split in ("train", "test"):
        (images, image_path), (labels, label_path) = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1:
            raise DataError(f"{image_path}: expected images N x H x W and labels N, "
                             f"got {images.shape} and {labels.shape} ({label_path})")
        if len(images) != len(labels):
            raise DataError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    return ImageDataset(
        name="mnist",
        train_images=_to_unit_float(arrays["train_images"][0][:, None]),
        train_labels=_check_labels(arrays["train_labels"][0], 10, arrays["train_labels"][1]),
        test_images=_to_unit_float(arrays["test_images"][0][:, None]),
        test_labels=_check_labels(arrays["test_labels"][0], 10, arrays["test_labels"][1]),
        class_names=tuple(str(k) for k in range(10)),
        source=f"MNIST from {folder}",
    )


def load_sklearn_digits(test_every: int = 4, note: str = "") -> ImageDataset:
    """The 1,797 handwritten 8 x 8 digits shipped with scikit-learn (offline; UCI optdigits test set).

    Pixels 0..16 are scaled to [0, 1]. They have no official split (**book choice**): in
    each class, every ``test_every``-th sample (in file order) is a test sample and the
    others are training samples, a fixed, stratified split with no randomness.
    """
    if isinstance(test_every, bool) or not isinstance(test_every, (int, np.integer)) or test_every < 2:
        raise ValueError(f"test_every={test_every!r} must be an integer >= 2")
    try:
        from sklearn.datasets import load_digits as sklearn_load_digits
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("scikit-learn is needed for the digits fallback: pip install scikit-learn") from error
    bunch = sklearn_load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    is_test = np.zeros(len(labels), dtype=bool)
    for k in range(10):
        members = np.flatnonzero(labels == k)
        is_test[members[test_every - 1 :: test_every]] = True
    source = "scikit-learn digits (8x8, UCI optdigits)" + (f" ({note})" if note else "")
    return ImageDataset(
        name="digits",
        train_images=images[~is_test],
        train_labels=labels[~is_test],
        test_images=images[is_test],
        test_labels=labels[is_test],
        class_names=tuple(str(k) for k in range(10)),
        source=source,
    )


def load_digits(data_dir: str | os.PathLike | None = None, *, fallback: bool = True) -> ImageDataset:
    """Handwritten digits: MNIST when the data directory has it, else scikit-learn's digits.

    The fallback happens only when no MNIST file is present at all, and never while
    ``MOECL_DATA`` is set (the data directory is then explicit: `check_data_dir`); it is
    announced in one line on stderr. A partial or corrupt MNIST raises, as in `load_mnist`. The ``source`` of the result says which data it is,
    e.g. ``"scikit-learn digits (8x8, UCI optdigits) (fallback: MNIST not found in /x)"``.
    """
    if data_dir is None and data_dir_is_explicit():  # MOECL_DATA set: its data or nothing
        root = check_data_dir()
        if find_mnist(root) is None:
            raise FileNotFoundError(f"MNIST not found in {DATA_ENV}={root} (no {MNIST_FOLDER}/ folder); "
                                    "no fallback to scikit-learn's digits while MOECL_DATA is set")
        return load_mnist(root)
    root = resolve_data_dir(data_dir)
    if find_mnist(root) is not None or not fallback:
        return load_mnist(root)
    print(f"moecl: note: MNIST not found in {root}; using scikit-learn's 8 x 8 digits instead "
          f"(set {DATA_ENV} to a folder with MNIST, data_scripts/download.py)", file=sys.stderr)
    return load_sklearn_digits(note=f"fallback: MNIST not found in {root}")


def _cifar_batch(path: Path, label_keys: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """uint8 images N x 3 x 32 x 32 and the label arrays named ``label_keys`` of one batch."""
    entry = read_cifar_pickle(path)
    missing = [key for key in ("data", *label_keys) if key not in entry]
    if missing:
        raise DataError(f"{path}: CIFAR batch lacks the key(s) {missing} (has {sorted(entry)})")
    data = np.asarray(entry["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' must be uint8 rows of 3072 values, got {data.dtype} {data.shape}")
    labels = [np.asarray(entry[key], dtype=np.int64) for key in label_keys]
    for key, label in zip(label_keys, labels):
        if label.shape != (len(data),):
            raise DataError(f"{path}: {len(data)} images but '{key}' has shape {label.shape}")
    # Each row is the red, green and blue 32 x 32 planes in turn: reshape gives C x H x W.
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_meta(path: Path, keys: Sequence[str], counts: Sequence[int]) -> list[tuple[str, ...]]:
    """The class-name lists ``keys`` of a CIFAR meta file, each of its official length ``counts``."""
    entry = read_cifar_pickle(path)
    missing = [key for key in keys if key not in entry]
    if missing:
        raise DataError(f"{path}: CIFAR meta file lacks the key(s) {missing} (has {sorted(entry)})")
    names = []
    for key, count in zip(keys, counts):
        value = entry[key]
        if not isinstance(value, list) or len(value) != count or len(set(map(str, value))) != count:
            found = f"{len(value)} names" if isinstance(value, list) else type(value).__name__
            raise DataError(f"{path}: '{key}' must list {count} distinct class names, found {found}; "
                            "the file is corrupt")
        names.append(tuple(str(name) for name in value))
    return names


def load_cifar10(data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """CIFAR-10 (3 x 32 x 32, 10 classes) from ``cifar-10-batches-py``.

    Reads every ``data_batch_<k>`` present (the official set has five of 10,000 images;
    at least one is required; the source says how many were found), ``test_batch`` and
    the class names in ``batches.meta``.
    """
    folder = resolve_data_dir(data_dir) / CIFAR10_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10 not found: no folder {folder}")
    # data_batch_<k> exactly: stray files beside them (data_batch_1.bak, data_batch_2.part) are ignored
    batches = sorted((path for path in folder.glob("data_batch_*") if re.fullmatch(r"data_batch_[0-9]+", path.name)
                      and path.is_file()), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not batches:
        raise FileNotFoundError(f"CIFAR-10 training batches missing: no {folder / 'data_batch_1'}")
    (class_names,) = _cifar_meta(folder / "batches.meta", ["label_names"], [10])
    train = [_cifar_batch(path, ["labels"]) for path in batches]
    test_images, (test_labels,) = _cifar_batch(folder / "test_batch", ["labels"])
    names = ", ".join(path.name for path in batches)
    return ImageDataset(
        name="cifar10",
        train_images=_to_unit_float(np.concatenate([images for images, _ in train])),
        train_labels=_check_labels(np.concatenate([labels[0] for _, labels in train]), len(class_names), folder),
        test_images=_to_unit_float(test_images),
        test_labels=_check_labels(test_labels, len(class_names), folder / "test_batch"),
        class_names=class_names,
        source=f"CIFAR-10 from {folder} ({len(batches)} of 5 training batches: {names})",
    )


def load_cifar100(data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """CIFAR-100 (3 x 32 x 32, 100 fine classes in 20 superclasses) from ``cifar-100-python``.

    ``train`` and ``test`` hold ``fine_labels`` and ``coarse_labels``; ``meta`` holds
    ``fine_label_names`` and ``coarse_label_names``.
    """
    folder = resolve_data_dir(data_dir) / CIFAR100_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-100 not found: no folder {folder}")
    fine_names, coarse_names = _cifar_meta(folder / "meta", ["fine_label_names", "coarse_label_names"], [100, 20])
    keys = ["fine_labels", "coarse_labels"]
    train_images, (train_fine, train_coarse) = _cifar_batch(folder / "train", keys)
    test_images, (test_fine, test_coarse) = _cifar_batch(folder / "test", keys)
    return ImageDataset(
        name="cifar100",
        train_images=_to_unit_float(train_images),
        train_labels=_check_labels(train_fine, len(fine_names), folder / "train"),
        test_images=_to_unit_float(test_images),
        test_labels=_check_labels(test_fine, len(fine_names), folder / "test"),
        class_names=fine_names,
        source=f"CIFAR-100 from {folder}",
        train_coarse_labels=_check_labels(train_coarse, len(coarse_names), folder / "train"),
        test_coarse_labels=_check_labels(test_coarse, len(coarse_names), folder / "test"),
        coarse_class_names=coarse_names,
    )


def _stack_images(paths: Sequence[Path]) -> np.ndarray:
    """Decode images of one common size into float32 N x 3 x H x W."""
    arrays = [read_rgb(path) for path in paths]
    if not arrays:
        return np.zeros((0, 3, 64, 64), dtype=np.float32)
    shape = arrays[0].shape
    for path, array in zip(paths, arrays):
        if array.shape != shape:
            raise DataError(f"{path}: image of size {array.shape[:2]} differs from {paths[0]} ({shape[:2]})")
    return _to_unit_float(np.stack(arrays).transpose(0, 3, 1, 2))


def load_tiny_imagenet(
    data_dir: str | os.PathLike | None = None,
    classes: Sequence[int | str] | None = None,
    train_per_class: int | None = None,
) -> ImageDataset:
    """Tiny ImageNet (3 x 64 x 64) from the official ``tiny-imagenet-200`` folders.

    ``classes`` selects classes by wnid (``"n01443537"``) or by index into ``wnids.txt``;
    labels then number the selected classes 0..k-1 in the order given. The full set has
    100,000 training images (4.9 GB as float32), so loading a subset is the usual use.
    ``train_per_class`` keeps the first images (in sorted file order) of each class.
    The official test images have no labels: the labelled ``val`` split (50 per class,
    from ``val/val_annotations.txt``) is the test split here. Class names are the first
    synonym in ``words.txt`` when it is present, else the wnid. Greyscale JPEGs become RGB.
    """
    folder = resolve_data_dir(data_dir) / TINY_IMAGENET_FOLDER
    wnids_path = folder / "wnids.txt"
    if not wnids_path.is_file():
        raise FileNotFoundError(f"Tiny ImageNet not found: no {wnids_path}")
    wnids = [line.strip() for line in read_text(wnids_path).splitlines() if line.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise DataError(f"{wnids_path}: must list distinct class ids, one per line")
    for wnid in wnids:  # folder names: nothing that could leave train/
        if not re.fullmatch(r"[A-Za-z0-9_-]+", wnid):
            raise DataError(f"{wnids_path}: class id {wnid[:40]!r} is not a plain folder name; the file is corrupt")
    if classes is None:
        chosen = list(wnids)
    else:
        chosen = []
        for item in classes:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < len(wnids):
                chosen.append(wnids[int(item)])
            elif isinstance(item, str) and item in wnids:
                chosen.append(item)
            else:
                raise ValueError(f"classes contains {item!r}: not a wnid in {wnids_path} "
                                 f"nor an index 0..{len(wnids) - 1}")
        if not chosen or len(set(chosen)) != len(chosen):
            raise ValueError(f"classes={list(classes)!r} must be non-empty and without repeats")
    if train_per_class is not None and (isinstance(train_per_class, bool) or not isinstance(
            train_per_class, (int, np.integer)) or train_per_class < 1):
        raise ValueError(f"train_per_class={train_per_class!r} must be a positive integer or None")

    words = {}
    words_path = folder / "words.txt"
    if words_path.is_file():
        with open_binary(words_path) as handle:
            words_text = handle.read().decode("utf-8", errors="replace")
        for line in words_text.splitlines():
            wnid, _, description = line.partition("\t")
            words[wnid.strip()] = description.split(",")[0].strip()

    train_paths, train_labels = [], []
    for label, wnid in enumerate(chosen):
        image_folder = folder / "train" / wnid / "images"
        if not image_folder.is_dir():
            raise FileNotFoundError(f"Tiny ImageNet training folder missing: {image_folder}")
        paths = sorted(p for p in image_folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        if not paths:
            raise FileNotFoundError(f"Tiny ImageNet training folder {image_folder} has no images")
        paths = paths[:train_per_class] if train_per_class else paths
        train_paths += paths
        train_labels += [label] * len(paths)

    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(f"Tiny ImageNet validation labels missing: {annotations}")
    index = {wnid: label for label, wnid in enumerate(chosen)}
    test_paths, test_labels = [], []
    images_folder = (folder / "val" / "images").resolve()
    for number, line in enumerate(read_text(annotations).splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise DataError(f"{annotations}, line {number}: expected '<file>\\t<wnid>\\t...', got {line!r}")
        if fields[1] not in wnids:
            raise DataError(f"{annotations}, line {number}: wnid {fields[1]!r} is not in {wnids_path}")
        image_path = folder / "val" / "images" / fields[0]
        if Path(fields[0]).is_absolute() or not image_path.resolve().is_relative_to(images_folder):
            raise DataError(f"{annotations}, line {number}: image {fields[0]!r} lies outside {images_folder}; "
                            "the file is corrupt or hostile")
        if fields[1] in index:
            test_paths.append(image_path)
            test_labels.append(index[fields[1]])
    without = [wnid for wnid in chosen if index[wnid] not in test_labels]
    if without:
        raise DataError(f"{annotations}: no validation image of class {without[0]}"
                        + (f" (nor of {len(without) - 1} other classes)" if len(without) > 1 else "")
                        + ("; the file is empty" if not test_paths and not read_text(annotations).strip() else "")
                        + "; the file is corrupt or truncated")
    order = np.argsort([str(p) for p in test_paths], kind="stable")
    test_paths = [test_paths[i] for i in order]
    test_labels = [test_labels[i] for i in order]

    subset = "" if classes is None else f", {len(chosen)} of {len(wnids)} classes"
    return ImageDataset(
        name="tiny-imagenet",
        train_images=_stack_images(train_paths),
        train_labels=np.asarray(train_labels, dtype=np.int64),
        test_images=_stack_images(test_paths),
        test_labels=np.asarray(test_labels, dtype=np.int64),
        class_names=tuple(words.get(wnid, wnid) for wnid in chosen),
        source=f"Tiny ImageNet from {folder} ({len(train_paths)} train / {len(test_paths)} val images{subset})",
    )


#: Loaders by data set name.
LOADERS = {
    "mnist": load_mnist,
    "digits": load_digits,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tiny-imagenet": load_tiny_imagenet,
}


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, **kwargs) -> ImageDataset:
    """Load a data set by name (a key of `LOADERS`)."""
    if name not in LOADERS:
        raise ValueError(f"name={name!r} is not one of {sorted(LOADERS)}")
    return LOADERS[name](data_dir, **kwargs)
