"""Real image data for the deep experiments (THEORY.md section 6): loaders and task streams.

The paper carries its linear analysis to deep networks on MNIST (three one-vs-rest
tasks: digits 1, 4, 7; 100 samples per task), CIFAR-10, CIFAR-100 and Tiny ImageNet.
This module reads those data sets from the files their authors publish, with plain
numpy and Pillow (no torchvision), and cuts them into continual-learning tasks.

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
`FileNotFoundError` and a corrupt or truncated one `ValueError`, both naming the path;
nothing is cached, so a failed load leaves no half-loaded data behind.

Task streams
------------
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

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

#: Environment variable naming the data directory.
DATA_ENV = "MOECL_DATA"
#: Data directory used when neither an argument nor `DATA_ENV` gives one.
DEFAULT_DATA_DIR = Path("~/.cache/moecl")

#: The digits of the paper's one-vs-rest tasks (THEORY.md section 6).
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

SCENARIOS = ("task", "class")


# --------------------------------------------------------------------------- data sets


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


def _to_unit_float(images: np.ndarray) -> np.ndarray:
    """uint8 pixels 0..255 -> float32 in [0, 1]."""
    return images.astype(np.float32) / np.float32(255.0)


def _check_labels(labels: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels outside 0..{num_classes - 1} "
                         f"(found {labels.min()}..{labels.max()}); the file is corrupt")
    return labels


# --------------------------------------------------------------------------- MNIST (IDX)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or raw, as a uint8 array.

    Layout: two zero bytes, a type byte (0x08 = unsigned byte), a byte giving the number
    of dimensions, one big-endian uint32 per dimension, then the values in C order.
    Raises `FileNotFoundError` if absent and `ValueError` if the header is wrong or the
    file is truncated or has trailing bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot decompress ({error}); the file is corrupt or truncated") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise ValueError(f"{path}: IDX type code {raw[2]:#04x} is not 0x08 (unsigned byte)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header promises {expected} values of shape {shape} "
                         f"but the file holds {len(raw) - header}; it is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


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
            raise ValueError(f"{image_path}: expected images N x H x W and labels N, "
                             f"got {images.shape} and {labels.shape} ({label_path})")
        if len(images) != len(labels):
            raise ValueError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    return ImageDataset(
        name="mnist",
        train_images=_to_unit_float(arrays["train_images"][0][:, None]),
        train_labels=_check_labels(arrays["train_labels"][0], 10, arrays["train_labels"][1]),
        test_images=_to_unit_float(arrays["test_images"][0][:, None]),
        test_labels=_check_labels(arrays["test_labels"][0], 10, arrays["test_labels"][1]),
        class_names=tuple(str(k) for k in range(10)),
        source=f"MNIST from {folder}",
    )


# --------------------------------------------------------------------------- scikit-learn digits


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

    The fallback happens only when no MNIST file is present at all; a partial or corrupt
    MNIST raises, as in `load_mnist`. The ``source`` of the result says which data it is,
    e.g. ``"scikit-learn digits (8x8, UCI optdigits) (fallback: MNIST not found in /x)"``.
    """
    root = resolve_data_dir(data_dir)
    if find_mnist(root) is not None or not fallback:
        return load_mnist(root)
    return load_sklearn_digits(note=f"fallback: MNIST not found in {root}")


# --------------------------------------------------------------------------- CIFAR (python pickles)

#: The only globals a CIFAR pickle may name: numpy's array reconstruction (old and new paths).
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy's array reconstruction.

    Unpickling can run arbitrary code; the CIFAR batches only need dicts, lists, bytes,
    numbers and numpy arrays, so nothing else is allowed.
    """

    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")


def read_cifar_pickle(path: str | os.PathLike) -> dict:
    """Read one CIFAR python batch (``data_batch_1``, ``test``, ``meta``, ...) as a dict with str keys.

    The official files are Python 2 pickles (bytes keys); ``encoding="latin1"`` reads their
    numpy arrays, and keys and byte strings are decoded to str.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file not found: {path}")
    try:
        with path.open("rb") as handle:
            entry = _CifarUnpickler(handle, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError, MemoryError, OverflowError) as error:
        raise ValueError(f"{path}: not a readable CIFAR python pickle ({type(error).__name__}: {error}); "
                         "the file is corrupt or truncated") from error
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: a CIFAR batch must be a dict, found {type(entry).__name__}")

    def text(value):
        return value.decode("latin1") if isinstance(value, bytes) else value

    return {text(key): ([text(v) for v in value] if isinstance(value, list) else value)
            for key, value in entry.items()}


def _cifar_batch(path: Path, label_keys: Sequence[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """uint8 images N x 3 x 32 x 32 and the label arrays named ``label_keys`` of one batch."""
    entry = read_cifar_pickle(path)
    missing = [key for key in ("data", *label_keys) if key not in entry]
    if missing:
        raise ValueError(f"{path}: CIFAR batch lacks the key(s) {missing} (has {sorted(entry)})")
    data = np.asarray(entry["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{path}: 'data' must be uint8 rows of 3072 values, got {data.dtype} {data.shape}")
    labels = [np.asarray(entry[key], dtype=np.int64) for key in label_keys]
    for key, label in zip(label_keys, labels):
        if label.shape != (len(data),):
            raise ValueError(f"{path}: {len(data)} images but '{key}' has shape {label.shape}")
    # Each row is the red, green and blue 32 x 32 planes in turn: reshape gives C x H x W.
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_meta(path: Path, keys: Sequence[str]) -> list[tuple[str, ...]]:
    entry = read_cifar_pickle(path)
    missing = [key for key in keys if key not in entry]
    if missing:
        raise ValueError(f"{path}: CIFAR meta file lacks the key(s) {missing} (has {sorted(entry)})")
    return [tuple(str(name) for name in entry[key]) for key in keys]


def load_cifar10(data_dir: str | os.PathLike | None = None) -> ImageDataset:
    """CIFAR-10 (3 x 32 x 32, 10 classes) from ``cifar-10-batches-py``.

    Reads every ``data_batch_<k>`` present (the official set has five of 10,000 images;
    at least one is required; the source says how many were found), ``test_batch`` and
    the class names in ``batches.meta``.
    """
    folder = resolve_data_dir(data_dir) / CIFAR10_FOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"CIFAR-10 not found: no folder {folder}")
    batches = sorted(folder.glob("data_batch_[0-9]*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not batches:
        raise FileNotFoundError(f"CIFAR-10 training batches missing: no {folder / 'data_batch_1'}")
    (class_names,) = _cifar_meta(folder / "batches.meta", ["label_names"])
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
    fine_names, coarse_names = _cifar_meta(folder / "meta", ["fine_label_names", "coarse_label_names"])
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


# --------------------------------------------------------------------------- Tiny ImageNet (folders of JPEGs)


def _read_rgb(path: Path) -> np.ndarray:
    """One image file as uint8 H x W x 3 (greyscale and other modes converted to RGB)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot decode image ({error}); the file is corrupt or truncated") from error


def _stack_images(paths: Sequence[Path]) -> np.ndarray:
    """Decode images of one common size into float32 N x 3 x H x W."""
    arrays = [_read_rgb(path) for path in paths]
    if not arrays:
        return np.zeros((0, 3, 64, 64), dtype=np.float32)
    shape = arrays[0].shape
    for path, array in zip(paths, arrays):
        if array.shape != shape:
            raise ValueError(f"{path}: image of size {array.shape[:2]} differs from {paths[0]} ({shape[:2]})")
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
    wnids = [line.strip() for line in wnids_path.read_text().splitlines() if line.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise ValueError(f"{wnids_path}: must list distinct class ids, one per line")
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
        for line in words_path.read_text(encoding="utf-8", errors="replace").splitlines():
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
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"{annotations}, line {number}: expected '<file>\\t<wnid>\\t...', got {line!r}")
        if fields[1] not in wnids:
            raise ValueError(f"{annotations}, line {number}: wnid {fields[1]!r} is not in {wnids_path}")
        if fields[1] in index:
            test_paths.append(folder / "val" / "images" / fields[0])
            test_labels.append(index[fields[1]])
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


# --------------------------------------------------------------------------- tasks


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


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    return int(seed)


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

    THEORY.md section 6: digits 1, 4, 7 and 100 training samples per task. ``dataset``
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
    seed = _check_seed(seed)

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
    seed = _check_seed(seed)

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
    rng = np.random.default_rng(np.random.SeedSequence([_check_seed(seed), 1]))
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
        total = len([line for line in wnids_path.read_text().splitlines() if line.strip()])
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
