"""ResNet-18 experts from the command line on every stream of ``deep-methods`` (``--set architecture=resnet18``).

Two rounds, a few images, width 4, on small copies of the data sets in their official formats
(`official_files.write_all`): the mechanics of every method family with the network the paper's
public code runs on CIFAR-100; not a measurement.
"""

import numpy as np
import pytest

from moecl import cli
from moecl.deep import datasets
from moecl.experiments.deep_methods import DEEP_STREAMS
from moecl.results import load_results

from official_files import write_all

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ["--set", "architecture=resnet18", "--set", "T=2", "--set", "samples_per_round=20", "--set", "epochs=1",
        "--set", "batch_size=4", "--set", "width=4", "--set", "test_samples=6", "--replicates", "2", "--no-progress"]

#: 20 samples per round are every training image of a task in `official_files.write_all`: every class of
#: the task is in the round's sample (SEED fits a Gaussian only to a class it sees; a class left out of
#: a task's only round keeps an infinite test loss and the command line refuses the results).

#: Per stream: the scale and the extra arguments. digits-1v runs at the long scale only, which needs
#: T >= 5 T1: T1 = 0 (no exploration) lets two rounds through.
STREAM_ARGUMENTS = {
    "digits": ["--set", "methods=finetune,gate-M2,seed-M2"],
    "digits-1v": ["--scale", "long", "--set", "T1=0", "--set", "methods=finetune,gate-M4,seed-M4"],
    "cifar10": ["--set", "methods=finetune,gate-M2,seed-M2"],
    "tiny-imagenet": ["--set", "classes=8", "--set", "methods=finetune,gate-M2,seed-M2"],
    "cifar100": ["--set", "methods=finetune,gate-M2,seed-M2"],
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("data"))


def test_every_stream_is_covered():
    assert set(STREAM_ARGUMENTS) == set(DEEP_STREAMS)


@pytest.mark.parametrize("stream", DEEP_STREAMS)
def test_resnet18_runs_on_every_stream(stream, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(datasets.DATA_ENV, str(data_dir))
    status = cli.main(["run", "deep-methods", "--set", f"stream={stream}", *TINY, *STREAM_ARGUMENTS[stream],
                       "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    header, arrays = load_results(captured.out.strip().splitlines()[-1])
    assert header["stream"] == stream and str(data_dir) in header["source"]
    labels = header["labels"]
    assert len(labels) == 3 and all(header["configs"][label]["architecture"] == "resnet18" for label in labels)
    for label in labels:
        curve = arrays[f"{label}/task/accuracy_curve"]
        assert curve.shape == (2, 2) and np.all((curve >= 0) & (curve <= 1))
