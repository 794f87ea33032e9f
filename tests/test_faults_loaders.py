"""Data files that are wrong in ways the loaders themselves must name (issue 25, defect 6).

Before, each ended far from the file, in the task streams: "asked for N samples of a class
that has only 0".
"""

from __future__ import annotations

import pickle

import pytest

from moecl.deep import datasets, streams
from moecl.deep.datasets import DataError
from test_data import write_cifar10, write_cifar100, write_tiny_imagenet


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("bom", [True, False])
def test_a_utf16_wnids_names_the_file(tmp_path, bom):
    folder = write_tiny_imagenet(tmp_path)
    text = (folder / "wnids.txt").read_text()
    (folder / "wnids.txt").write_bytes(text.encode("utf-16" if bom else "utf-16-le"))
    for call in (lambda: datasets.load_tiny_imagenet(tmp_path),
                 lambda: streams.tiny_imagenet_tasks(data_dir=tmp_path, classes_per_task=1)):
        with pytest.raises(DataError) as error:
            call()
        message = _one_line(error)
        assert str(folder / "wnids.txt") in message and "UTF-16" in message


def test_an_empty_val_annotations_names_the_file(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    (folder / "val" / "val_annotations.txt").write_text("")
    with pytest.raises(DataError) as error:
        datasets.load_tiny_imagenet(tmp_path)
    message = _one_line(error)
    assert str(folder / "val" / "val_annotations.txt") in message and "empty" in message


def test_a_class_without_validation_images_names_the_file(tmp_path):
    folder = write_tiny_imagenet(tmp_path)
    path = folder / "val" / "val_annotations.txt"
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if "n00000002" not in line))
    with pytest.raises(DataError) as error:
        datasets.load_tiny_imagenet(tmp_path)
    assert str(path) in _one_line(error) and "n00000002" in str(error.value)


@pytest.mark.parametrize("count", [12, 9])
def test_a_cifar10_meta_with_another_number_of_names_names_the_file(tmp_path, count):
    write_cifar10(tmp_path, batches=1)
    path = tmp_path / datasets.CIFAR10_FOLDER / "batches.meta"
    path.write_bytes(pickle.dumps({b"label_names": [f"c{k}".encode() for k in range(count)]}, protocol=2))
    with pytest.raises(DataError) as error:
        datasets.load_cifar10(tmp_path)
    message = _one_line(error)
    assert str(path) in message and f"found {count} names" in message and "10 distinct" in message


def test_a_cifar100_meta_with_repeated_names_names_the_file(tmp_path):
    folder = write_cifar100(tmp_path)
    path = folder / "meta"
    path.write_bytes(pickle.dumps({b"fine_label_names": [b"same"] * 100,
                                   b"coarse_label_names": [f"s{k}".encode() for k in range(20)]}))
    with pytest.raises(DataError) as error:
        datasets.load_cifar100(tmp_path)
    assert str(path) in _one_line(error) and "fine_label_names" in str(error.value)
