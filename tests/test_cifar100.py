"""CIFAR-100 from the official python files: the superclass stream and ``--set stream=cifar100``.

The data set is not on the test machines; `official_files.write_cifar100` writes a small copy in
the official format (train/test/meta pickles with fine and coarse labels and names).
"""

import numpy as np
import pytest

from moecl import cli
from moecl.deep import datasets, streams
from moecl.results import load_results

from official_files import CIFAR100_SUPERCLASSES, write_cifar100
from small_runs import error_line

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def cifar100_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar100(root, train_per_class=4, test_per_class=20)
    return root


def test_the_official_files_are_read_with_fine_and_coarse_labels(cifar100_dir):
    data = datasets.load_cifar100(cifar100_dir)
    assert data.image_shape == (3, 32, 32) and data.num_classes == 100
    assert data.class_names[:3] == ("apple", "aquarium_fish", "baby")
    assert data.coarse_class_names == tuple(CIFAR100_SUPERCLASSES)
    assert len(data.train_labels) == 400 and len(data.test_labels) == 2000
    for labels, coarse in ((data.train_labels, data.train_coarse_labels), (data.test_labels, data.test_coarse_labels)):
        for fine, superclass in zip(labels, coarse):
            assert data.class_names[fine] in CIFAR100_SUPERCLASSES[data.coarse_class_names[superclass]]


def test_superclass_tasks_are_the_twenty_superclasses(cifar100_dir):
    stream = streams.cifar100_tasks(grouping="superclass", scenario="class", test_samples_per_task=100, seed=3,
                                    data_dir=cifar100_dir)
    assert stream.N == 20 and stream.num_outputs == 100 and stream.scenario == "class"
    for task, (superclass, names) in zip(stream.tasks, CIFAR100_SUPERCLASSES.items()):
        assert task.class_names == tuple(sorted(names))
        assert task.name == f"{superclass}: {', '.join(sorted(names))}"
        # class-incremental labels: task n's five classes are 5n .. 5n + 4, in order of appearance
        assert sorted(set(task.train_labels)) == list(range(5 * task.index, 5 * task.index + 5))
        assert len(task.test_labels) == 100 and np.all(np.bincount(task.test_labels - 5 * task.index) == 20)
    again = streams.cifar100_tasks(grouping="superclass", scenario="class", test_samples_per_task=100, seed=3,
                                   data_dir=cifar100_dir)
    assert all(np.array_equal(a.train_images, b.train_images) for a, b in zip(stream, again))


def test_deep_methods_runs_on_cifar100_from_the_command_line(cifar100_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(datasets.DATA_ENV, str(cifar100_dir))
    status = cli.main(["run", "deep-methods", "--set", "stream=cifar100", "--set", "T=2",
                       "--set", "methods=finetune,gate-M2,seed-M2", "--set", "samples_per_round=10",
                       "--set", "epochs=1", "--set", "width=4", "--set", "test_samples=10",
                       "--no-progress", "--out", str(tmp_path)])
    assert status == 0
    header, arrays = load_results(capsys.readouterr().out.strip().splitlines()[-1])
    assert header["stream"] == "cifar100" and "CIFAR-100" in header["source"] and header["rounds"] == 2
    assert header["configs"]["gate-M2"]["M"] == 2
    matrix = arrays["gate-M2/class/accuracy_matrix"]
    assert matrix.shape == (2, 2, 2) and np.isfinite(matrix[:, 1, :]).all()


def test_cifar100_without_its_folder_is_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / datasets.CIFAR10_FOLDER).mkdir()  # a data directory, but without CIFAR-100
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))
    assert cli.main(["run", "deep-methods", "--set", "stream=cifar100", "--out", str(tmp_path / "out")]) == cli.EXIT_FILES
    line = error_line(capsys)
    assert "stream='cifar100'" in line and "cifar-100-python" in line
