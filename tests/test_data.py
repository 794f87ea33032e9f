"""Data loaders and task streams (`moecl.deep.datasets`, `moecl.deep.streams`).

The loaders are tested on tiny files written here in the official on-disk formats
(MNIST IDX gzip and raw, CIFAR-10 and CIFAR-100 python pickles, a Tiny ImageNet folder
of JPEGs with a greyscale one), on corrupt and missing files, and, when ``MOECL_DATA``
is set (CI sets it to ``../shared/data``), on the real files. The download script is
tested in ``test_download.py``.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from moecl.deep import datasets, streams
from moecl.deep.datasets import ImageDataset

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- writers of the official formats


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file (unsigned bytes): magic 0,0,0x08,ndim, big-endian dims, values."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(folder: Path, n_train=40, n_test=20, gz=True, seed=0):
    """Tiny MNIST in ``folder``: random pixels, labels cycling 0..9. Returns the arrays."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        if gz:
            (folder / f"{stem}.gz").write_bytes(gzip.compress(idx_bytes(array)))
        else:
            (folder / stem).write_bytes(idx_bytes(array))
    return arrays


def cifar_rows(rng, n):
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, batches=2, per_batch=20, n_test=20, protocol=2, seed=0):
    """Tiny CIFAR-10 as the official Python-2 pickles (bytes keys). Returns the rows and labels."""
    rng = np.random.default_rng(seed)
    folder = root / datasets.CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    meta = {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    written = {"train": [], "train_labels": []}
    for k in range(1, batches + 1):
        rows = cifar_rows(rng, per_batch)
        labels = [int(v) for v in rng.permutation(np.arange(per_batch) % 10)]
        batch = {b"batch_label": f"training batch {k} of 5".encode(), b"labels": labels, b"data": rows,
                 b"filenames": [f"img_{k}_{i}.png".encode() for i in range(per_batch)]}
        (folder / f"data_batch_{k}").write_bytes(pickle.dumps(batch, protocol=protocol))
        written["train"].append(rows)
        written["train_labels"] += labels
    rows = cifar_rows(rng, n_test)
    labels = [int(v) for v in np.arange(n_test) % 10]
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": rows,
            b"filenames": [f"test_{i}.png".encode() for i in range(n_test)]}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=protocol))
    written.update(test=rows, test_labels=labels, train=np.concatenate(written["train"]))
    return written


def write_cifar100(root: Path, per_class=4, seed=0):
    """Tiny CIFAR-100 (train/test/meta with fine and coarse labels): fine class f is in superclass f % 20."""
    rng = np.random.default_rng(seed)
    folder = root / datasets.CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    fine_names = [f"fine{f:02d}".encode() for f in range(100)]
    coarse_names = [f"super{c:02d}".encode() for c in range(20)]
    meta = {b"fine_label_names": fine_names, b"coarse_label_names": coarse_names}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=pickle.HIGHEST_PROTOCOL))
    for split, n_per in (("train", per_class), ("test", 2)):
        fine = np.repeat(np.arange(100), n_per)
        entry = {b"filenames": [b"x.png"] * len(fine), b"batch_label": split.encode(),
                 b"fine_labels": [int(f) for f in fine], b"coarse_labels": [int(f % 20) for f in fine],
                 b"data": cifar_rows(rng, len(fine))}
        (folder / split).write_bytes(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
    return folder


TINY_WNIDS = ["n00000001", "n00000002", "n00000003"]
GREY_FILE = "n00000002_1.JPEG"


def tiny_colour(label: int, i: int) -> tuple[int, int, int]:
    return (40 + 60 * label, 200 - 10 * i, 90 + 20 * i)


def write_tiny_imagenet(root: Path, train_per_class=4, val_per_class=2, size=64):
    """Tiny ImageNet folders with flat-colour JPEGs; ``GREY_FILE`` is a greyscale (mode L) JPEG."""
    from PIL import Image

    folder = root / datasets.TINY_IMAGENET_FOLDER
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (folder / "words.txt").write_text("n00000001\tgoldfish, Carassius auratus\nn00000002\ttabby, tabby cat\n"
                                      "n00000003\tbullfrog\nn09999999\tunused\n")
    for label, wnid in enumerate(TINY_WNIDS):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        boxes = []
        for i in range(train_per_class):
            name = f"{wnid}_{i}.JPEG"
            if name == GREY_FILE:
                Image.new("L", (size, size), 128).save(images / name, "JPEG")
            else:
                Image.new("RGB", (size, size), tiny_colour(label, i)).save(images / name, "JPEG", quality=95)
            boxes.append(f"{name}\t0\t0\t{size - 1}\t{size - 1}")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    lines, number = [], 0
    for i in range(val_per_class):
        for label, wnid in enumerate(TINY_WNIDS):
            name = f"val_{number}.JPEG"
            Image.new("RGB", (size, size), tiny_colour(label, 0)).save(folder / "val" / "images" / name, "JPEG",
                                                                       quality=95)
            lines.append(f"{name}\t{wnid}\t0\t0\t{size - 1}\t{size - 1}")
            number += 1
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def synthetic_dataset(per_class=30, test_per_class=12, num_classes=10, seed=0) -> ImageDataset:
    """A small in-memory data set whose image values encode the sample index (to trace draws)."""
    train_labels = np.repeat(np.arange(num_classes), per_class)
    test_labels = np.repeat(np.arange(num_classes), test_per_class)
    rng = np.random.default_rng(seed)
    return ImageDataset(
        name="synthetic",
        train_images=rng.random((len(train_labels), 1, 4, 4), dtype=np.float32),
        train_labels=train_labels,
        test_images=rng.random((len(test_labels), 1, 4, 4), dtype=np.float32),
        test_labels=test_labels,
        class_names=tuple(f"c{k}" for k in range(num_classes)),
        source="synthetic",
    )


# --------------------------------------------------------------------------- data directory


def test_data_dir_argument_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv("MOECL_DATA", str(tmp_path / "env"))
    assert datasets.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert datasets.resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("MOECL_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.resolve_data_dir() == tmp_path / "home" / ".cache" / "moecl"


# --------------------------------------------------------------------------- MNIST and the digits fallback


def test_mnist_idx_gzip(tmp_path):
    arrays = write_mnist(tmp_path / "mnist")
    ds = datasets.load_mnist(tmp_path)
    assert ds.train_images.shape == (40, 1, 28, 28) and ds.test_images.shape == (20, 1, 28, 28)
    assert ds.train_images.dtype == np.float32 and ds.train_labels.dtype == np.int64
    np.testing.assert_array_equal(ds.train_images[:, 0], arrays["train-images-idx3-ubyte"] / np.float32(255))
    np.testing.assert_array_equal(ds.test_labels, arrays["t10k-labels-idx1-ubyte"])
    assert ds.class_names == tuple("0123456789")
    assert ds.source == f"MNIST from {tmp_path / 'mnist'}"
    assert not ds.train_images.flags.writeable


def test_mnist_raw_idx_in_torchvision_layout(tmp_path):
    arrays = write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    ds = datasets.load_digits(tmp_path)
    assert ds.name == "mnist" and "MNIST" in ds.source
    np.testing.assert_array_equal(ds.test_images[:, 0] * 255, arrays["t10k-images-idx3-ubyte"])


def test_digits_fall_back_to_scikit_learn_when_mnist_is_absent(tmp_path):
    ds = datasets.load_digits(tmp_path)
    assert ds.name == "digits"
    assert ds.source.startswith("scikit-learn digits")
    assert f"fallback: MNIST not found in {tmp_path}" in ds.source
    assert ds.image_shape == (1, 8, 8)
    assert len(ds.train_labels) + len(ds.test_labels) == 1797
    assert 0.0 <= ds.train_images.min() and ds.train_images.max() == 1.0
    # every class is in both splits, in proportion (every 4th sample of a class is a test sample)
    train_counts, test_counts = np.bincount(ds.train_labels), np.bincount(ds.test_labels)
    assert np.all(np.abs(train_counts - 3 * test_counts) <= 3)
    with pytest.raises(FileNotFoundError, match="MNIST not found"):
        datasets.load_digits(tmp_path, fallback=False)


def test_partial_mnist_raises_instead_of_falling_back(tmp_path):
    write_mnist(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        datasets.load_digits(tmp_path)


@pytest.mark.parametrize("damage", ["truncated gzip", "short payload", "bad magic", "label count"])
def test_corrupt_mnist_raises_value_error_naming_the_file(tmp_path, damage):
    write_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    if damage == "truncated gzip":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif damage == "short payload":
        path.write_bytes(gzip.compress(raw[:-100]))
    elif damage == "bad magic":
        path.write_bytes(gzip.compress(b"\x01\x02" + raw[2:]))
    else:
        labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
        labels.write_bytes(gzip.compress(idx_bytes(np.zeros(39, dtype=np.uint8))))
    with pytest.raises(ValueError, match="train-(images|labels)-idx"):
        datasets.load_digits(tmp_path)


# --------------------------------------------------------------------------- CIFAR-10 and CIFAR-100


def test_cifar10_python_batches(tmp_path):
    written = write_cifar10(tmp_path, batches=2)
    ds = datasets.load_cifar10(tmp_path)
    assert ds.train_images.shape == (40, 3, 32, 32) and ds.test_images.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_labels, written["train_labels"])
    # each row is the R, G, B planes of 32 x 32 in turn: pixel (c, h, w) is row[1024 c + 32 h + w]
    row = written["train"][25]
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert ds.train_images[25, c, h, w] == np.float32(row[1024 * c + 32 * h + w]) / 255
    assert ds.class_names[:2] == ("airplane", "automobile")
    assert "2 of 5 training batches" in ds.source and str(tmp_path) in ds.source


def test_cifar100_fine_and_coarse_labels(tmp_path):
    write_cifar100(tmp_path)
    ds = datasets.load_cifar100(tmp_path)
    assert ds.train_images.shape == (400, 3, 32, 32) and ds.test_images.shape == (200, 3, 32, 32)
    assert ds.num_classes == 100 and len(ds.coarse_class_names) == 20
    np.testing.assert_array_equal(ds.train_coarse_labels, ds.train_labels % 20)
    assert ds.class_names[7] == "fine07" and ds.coarse_class_names[3] == "super03"


@pytest.mark.parametrize("damage", ["truncated", "missing test", "no data key", "wrong row size", "malicious"])
def test_corrupt_or_missing_cifar_files(tmp_path, damage):
    write_cifar10(tmp_path, batches=1)
    folder = tmp_path / datasets.CIFAR10_FOLDER
    batch = folder / "data_batch_1"
    error, match = ValueError, "data_batch_1"
    if damage == "truncated":
        batch.write_bytes(batch.read_bytes()[:1000])
    elif damage == "missing test":
        (folder / "test_batch").unlink()
        error, match = FileNotFoundError, "test_batch"
    elif damage == "no data key":
        batch.write_bytes(pickle.dumps({b"labels": [0]}, protocol=2))
    elif damage == "wrong row size":
        batch.write_bytes(pickle.dumps({b"labels": [0], b"data": np.zeros((1, 100), np.uint8)}, protocol=2))
    else:  # a pickle that would run a command is refused, not executed
        batch.write_bytes(b"cos\nsystem\n(S'echo unsafe'\ntR.")
        match = "os.system is not allowed"
    with pytest.raises(error, match=match):
        datasets.load_cifar10(tmp_path)


def test_missing_cifar100_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        datasets.load_cifar100(tmp_path)


# --------------------------------------------------------------------------- Tiny ImageNet


def test_tiny_imagenet_folders_with_a_greyscale_jpeg(tmp_path):
    write_tiny_imagenet(tmp_path)
    ds = datasets.load_tiny_imagenet(tmp_path)
    assert ds.train_images.shape == (12, 3, 64, 64) and ds.test_images.shape == (6, 3, 64, 64)
    np.testing.assert_array_equal(ds.train_labels, np.repeat([0, 1, 2], 4))
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [2, 2, 2])
    assert ds.class_names == ("goldfish", "tabby", "bullfrog")
    # flat colours survive JPEG within 3/255; the greyscale image has three equal channels
    for index, (label, i) in enumerate((label, i) for label in range(3) for i in range(4)):
        expected = (128, 128, 128) if (label, i) == (1, 1) else tiny_colour(label, i)
        np.testing.assert_allclose(ds.train_images[index].mean(axis=(1, 2)), np.array(expected) / 255, atol=3 / 255)
    grey = ds.train_images[5]
    np.testing.assert_array_equal(grey[0], grey[1])
    np.testing.assert_array_equal(grey[0], grey[2])


def test_tiny_imagenet_class_subset_and_errors(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    ds = datasets.load_tiny_imagenet(tmp_path, classes=["n00000003", 0], train_per_class=2)
    assert ds.class_names == ("bullfrog", "goldfish")
    np.testing.assert_array_equal(ds.train_labels, [0, 0, 1, 1])
    assert "2 of 3 classes" in ds.source
    with pytest.raises(ValueError, match="classes contains 'n12345678'"):
        datasets.load_tiny_imagenet(tmp_path, classes=["n12345678"])
    bad = folder / "train" / "n00000001" / "images" / "n00000001_2.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(ValueError, match="n00000001_2.JPEG"):
        datasets.load_tiny_imagenet(tmp_path)
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match="val_annotations.txt"):
        datasets.load_tiny_imagenet(tmp_path, classes=[1])


# --------------------------------------------------------------------------- task streams


def test_one_vs_rest_tasks_are_balanced_binary_and_seeded():
    ds = synthetic_dataset(per_class=60)
    stream = streams.one_vs_rest_tasks(ds, samples_per_task=100, seed=3)
    assert stream.N == 3 and stream.scenario == "one-vs-rest" and stream.num_outputs == 2
    for task, digit in zip(stream, datasets.PAPER_DIGITS):
        assert task.classes == (digit,)
        np.testing.assert_array_equal(task.train_labels, task.train_dataset_labels == digit)
        assert task.train_labels.sum() == 50 and len(task.train_labels) == 100
        negatives = np.bincount(task.train_dataset_labels[task.train_labels == 0], minlength=10)
        negatives = np.delete(negatives, digit)
        assert negatives.max() - negatives.min() <= 1 and negatives.sum() == 50
        # the test set: every test image of the digit and as many others
        assert task.test_labels.sum() == 12 and len(task.test_labels) == 24
        # drawn without replacement: no training image appears twice
        assert len(np.unique(task.train_images.reshape(100, -1), axis=0)) == 100
    again = streams.one_vs_rest_tasks(ds, samples_per_task=100, seed=3)
    other = streams.one_vs_rest_tasks(ds, samples_per_task=100, seed=4)
    for a, b, c in zip(stream, again, other):
        np.testing.assert_array_equal(a.train_images, b.train_images)
        np.testing.assert_array_equal(a.test_labels, b.test_labels)
        assert not np.array_equal(a.train_images, c.train_images)


def test_one_vs_rest_default_is_the_paper_setting_on_the_fallback(tmp_path):
    stream = streams.one_vs_rest_tasks(data_dir=tmp_path)
    assert [t.classes for t in stream] == [(1,), (4,), (7,)]
    assert all(len(t.train_labels) == 100 for t in stream)
    assert "fallback" in stream.source and stream.image_shape == (1, 8, 8)


@pytest.mark.parametrize("scenario", ["task", "class"])
def test_class_split_labels_and_balance(scenario):
    ds = synthetic_dataset()
    groups = [[3, 1, 4], [5, 9, 2]]
    stream = streams.class_split_tasks(ds, groups, scenario=scenario, samples_per_task=31, seed=1)
    assert stream.num_outputs == (3 if scenario == "task" else 6)
    for n, (task, group) in enumerate(zip(stream, groups)):
        assert task.classes == tuple(group)
        np.testing.assert_array_equal(np.unique(task.train_dataset_labels), sorted(group))
        position = np.array([group.index(c) for c in task.train_dataset_labels])
        expected = position if scenario == "task" else position + 3 * n
        np.testing.assert_array_equal(task.train_labels, expected)
        counts = np.bincount(task.train_labels)[task.train_labels.min():]
        assert len(task.train_labels) == 31 and counts.max() - counts.min() <= 1
        assert len(task.test_labels) == 36  # all test samples of the three classes
    if scenario == "class":
        assert stream.class_names == ("c3", "c1", "c4", "c5", "c9", "c2")


def test_task_builders_reject_bad_arguments():
    ds = synthetic_dataset()
    with pytest.raises(ValueError, match="scenario='domain'"):
        streams.class_split_tasks(ds, [[0, 1]], scenario="domain")
    with pytest.raises(ValueError, match="class_groups"):
        streams.class_split_tasks(ds, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="samples_per_task"):
        streams.class_split_tasks(ds, [[0, 1]], samples_per_task=1000)
    with pytest.raises(ValueError, match="digits=\\(1, 12\\)"):
        streams.one_vs_rest_tasks(ds, digits=(1, 12))
    with pytest.raises(ValueError, match="seed=-1"):
        streams.one_vs_rest_tasks(ds, seed=-1)
    with pytest.raises(ValueError, match="classes_per_task=3"):
        streams.cifar10_tasks(ds, classes_per_task=3)
    with pytest.raises(ValueError, match="name='svhn'"):
        streams.build_task_stream("svhn")


def test_cifar_and_tiny_imagenet_task_streams_from_files(tmp_path):
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    write_tiny_imagenet(tmp_path)
    split10 = streams.build_task_stream("cifar10", data_dir=tmp_path)
    assert [t.class_names for t in split10][:2] == [("airplane", "automobile"), ("bird", "cat")]
    assert split10.N == 5 and split10.image_shape == (3, 32, 32)
    shuffled = streams.cifar10_tasks(data_dir=tmp_path, shuffle_classes=True, seed=5)
    assert sorted(c for t in shuffled for c in t.classes) == list(range(10))
    assert [t.classes for t in shuffled] == [t.classes for t in streams.cifar10_tasks(
        data_dir=tmp_path, shuffle_classes=True, seed=5)]

    ten = streams.cifar100_tasks(data_dir=tmp_path, scenario="class")
    assert ten.N == 10 and ten.num_outputs == 100 and ten[9].classes == tuple(range(90, 100))
    assert set(ten[9].train_labels) == set(range(90, 100))
    superclass = streams.build_task_stream("cifar100-superclass", data_dir=tmp_path)
    assert superclass.N == 20 and superclass.num_outputs == 5
    assert superclass[3].classes == (3, 23, 43, 63, 83) and superclass[3].name.startswith("super03:")
    np.testing.assert_array_equal(np.bincount(superclass[3].train_labels), [4] * 5)

    tiny = streams.tiny_imagenet_tasks(num_classes=2, classes_per_task=1, data_dir=tmp_path, scenario="class")
    assert [t.class_names for t in tiny] == [("goldfish",), ("tabby",)]
    assert tiny.image_shape == (3, 64, 64) and set(tiny[1].train_labels) == {1}


# --------------------------------------------------------------------------- real data under MOECL_DATA

REAL = os.environ.get("MOECL_DATA")
needs_real_data = pytest.mark.skipif(
    not REAL or not Path(REAL).is_dir(),
    reason="MOECL_DATA is not set to a data directory (CI sets it to ../shared/data); real-data checks skipped",
)


@needs_real_data
def test_real_data_under_moecl_data():
    root = Path(REAL)
    if (root / "mnist").is_dir():
        mnist = datasets.load_digits()
        assert mnist.name == "mnist" and mnist.source == f"MNIST from {root / 'mnist'}"
        assert mnist.train_images.shape == (60000, 1, 28, 28) and mnist.test_images.shape == (10000, 1, 28, 28)
        assert set(np.unique(mnist.train_labels)) == set(range(10))
        stream = streams.one_vs_rest_tasks(mnist)
        assert [int(t.train_labels.sum()) for t in stream] == [50, 50, 50]
    if (root / datasets.CIFAR10_FOLDER).is_dir():
        cifar = datasets.load_cifar10()
        assert cifar.class_names == ("airplane", "automobile", "bird", "cat", "deer",
                                     "dog", "frog", "horse", "ship", "truck")
        assert cifar.image_shape == (3, 32, 32) and 0.2 < cifar.train_images.mean() < 0.7
        assert len(np.unique(cifar.test_labels)) == 10
    if (root / datasets.TINY_IMAGENET_FOLDER).is_dir():
        tiny = datasets.load_tiny_imagenet(classes=[0, 1])
        assert tiny.image_shape == (3, 64, 64) and tiny.num_classes == 2
        assert len(tiny.train_labels) > 0 and len(tiny.test_labels) > 0


@needs_real_data
def test_official_mnist_checksums_match_the_download_table():
    """The script's MD5s agree with the official MNIST files kept under MOECL_DATA (all but the
    training images, which that folder's README says were re-gzipped)."""
    spec = importlib.util.spec_from_file_location("moecl_download_md5", ROOT / "data_scripts" / "download.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        folder = Path(REAL) / "mnist"
        if not folder.is_dir():
            pytest.skip(f"no MNIST in {REAL}")
        checked = 0
        for resource in module.DATASETS["mnist"].resources:
            if resource.filename != "train-images-idx3-ubyte.gz" and (folder / resource.filename).is_file():
                assert module.md5sum(folder / resource.filename) == resource.md5
                checked += 1
        assert checked == 3
    finally:
        del sys.modules[spec.name]
