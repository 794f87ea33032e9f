"""Small data sets written in the official file formats, for runs on a machine without the data.

``from official_files import write_cifar100, ...`` (pytest puts tests/ on the path). Each writer makes
the folder a data directory (``MOECL_DATA``) would hold, with random pixels: enough images per class
for the streams of ``deep-methods`` (its test images per task, `_DEEP_STREAM_SETTINGS`), few enough
to write in well under a second. scripts/gpu_check.sh uses them too, on a device without the data.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from moecl.deep import datasets


#: CIFAR-100's 20 superclasses (``coarse_label_names``, in the official order) and their five fine
#: classes, as the data set's web page lists them; the fine names of the ``meta`` file are these 100
#: names in alphabetical order (``fine_label_names``).
CIFAR100_SUPERCLASSES = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}


def _rows(rng, labels, classes):
    """3072 uint8 values per image, each class a little brighter than the last (so experts can learn)."""
    noise = rng.integers(0, 128, (len(labels), 3072))
    return (noise + (np.asarray(labels)[:, None] * 127 // max(classes - 1, 1))).astype(np.uint8)


def write_cifar100(root: Path, train_per_class: int = 4, test_per_class: int = 20, seed: int = 0) -> Path:
    """``<root>/cifar-100-python/{train,test,meta}`` as the official Python-2 pickles (bytes keys).

    ``train`` and ``test`` hold ``data`` (uint8 N x 3072), ``fine_labels``, ``coarse_labels``,
    ``filenames`` and ``batch_label``; ``meta`` holds ``fine_label_names`` and
    ``coarse_label_names``; the superclasses are those of `CIFAR100_SUPERCLASSES`.
    """
    rng = np.random.default_rng(seed)
    fine_names = sorted(name for names in CIFAR100_SUPERCLASSES.values() for name in names)
    coarse_names = list(CIFAR100_SUPERCLASSES)
    coarse_of = {fine_names.index(name): c for c, names in enumerate(CIFAR100_SUPERCLASSES.values())
                 for name in names}
    folder = Path(root) / datasets.CIFAR100_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    meta = {b"fine_label_names": [n.encode() for n in fine_names],
            b"coarse_label_names": [n.encode() for n in coarse_names]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        fine = rng.permutation(np.repeat(np.arange(100), per_class))
        entry = {b"filenames": [f"{fine_names[f]}_s_{i:06d}.png".encode() for i, f in enumerate(fine)],
                 b"batch_label": f"{split}ing batch 1 of 1".encode(),
                 b"fine_labels": [int(f) for f in fine], b"coarse_labels": [coarse_of[int(f)] for f in fine],
                 b"data": _rows(rng, fine, 100)}
        (folder / split).write_bytes(pickle.dumps(entry, protocol=2))
    return folder


def write_cifar10(root: Path, train_per_class: int = 10, test_per_class: int = 40, seed: int = 0) -> Path:
    """``<root>/cifar-10-batches-py`` with one ``data_batch_1``, ``test_batch`` and ``batches.meta``."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / datasets.CIFAR10_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {b"num_cases_per_batch": 10 * train_per_class, b"label_names": names, b"num_vis": 3072}, protocol=2))
    for name, per_class in (("data_batch_1", train_per_class), ("test_batch", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        entry = {b"batch_label": name.encode(), b"labels": [int(v) for v in labels], b"data": _rows(rng, labels, 10),
                 b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))]}
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    return folder


def write_tiny_imagenet(root: Path, classes: int = 8, train_per_class: int = 5, val_per_class: int = 20,
                        size: int = 64, seed: int = 0) -> Path:
    """``<root>/tiny-imagenet-200``: ``wnids.txt``, ``words.txt``, ``train/<wnid>/images/*.JPEG`` and
    ``val/images`` with ``val/val_annotations.txt`` (the labelled split the loader tests on)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = Path(root) / datasets.TINY_IMAGENET_FOLDER
    wnids = [f"n{10000000 + k:08d}" for k in range(classes)]
    (folder / "val" / "images").mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (folder / "words.txt").write_text("".join(f"{w}\tclass {k}, synonym\n" for k, w in enumerate(wnids)))

    def image(label):
        base = 40 + 160 * label // max(classes - 1, 1)
        return Image.fromarray((rng.integers(0, 50, (size, size, 3)) + base).astype(np.uint8))

    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True, exist_ok=True)
        boxes = []
        for i in range(train_per_class):
            image(label).save(images / f"{wnid}_{i}.JPEG", "JPEG", quality=90)
            boxes.append(f"{wnid}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("\n".join(boxes) + "\n")
    lines = []
    for i in range(val_per_class * classes):
        label = i % classes
        image(label).save(folder / "val" / "images" / f"val_{i}.JPEG", "JPEG", quality=90)
        lines.append(f"val_{i}.JPEG\t{wnids[label]}\t0\t0\t{size - 1}\t{size - 1}")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_mnist(root: Path, train_per_class: int = 10, test_per_class: int = 50, seed: int = 0) -> Path:
    """``<root>/mnist/`` with the four gzip IDX files (28 x 28 uint8 images, labels 0..9)."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / datasets.MNIST_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        images = (rng.integers(0, 100, (len(labels), 28, 28)) + 15 * labels[:, None, None]).astype(np.uint8)
        for key, array in ((f"{split}_images", images), (f"{split}_labels", labels)):
            header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            (folder / f"{datasets.MNIST_FILES[key]}.gz").write_bytes(gzip.compress(header + array.tobytes()))
    return folder


def write_all(root: Path) -> Path:
    """MNIST, CIFAR-10, CIFAR-100 and an 8-class Tiny ImageNet in ``root``: every stream of ``deep-methods``
    (Tiny ImageNet with ``--set classes=8``) at its test images per task."""
    write_mnist(root)
    write_cifar10(root)
    write_cifar100(root)
    write_tiny_imagenet(root)
    return Path(root)
