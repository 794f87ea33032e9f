"""Small inputs shared by the test files: a split-digits stream, a tiny deep config, the CLI's one error line."""

from moecl import deep
from moecl.deep import datasets, streams


def split_digits_stream():
    """Split scikit-learn digits: three two-class tasks with global (class-incremental) labels."""
    return streams.class_split_tasks(datasets.load_sklearn_digits(), [[0, 1], [2, 3], [4, 5]], scenario="class",
                                     samples_per_task=40, test_samples_per_task=20, seed=0)


def tiny(**changes):
    """A deep config small enough for a unit test (two experts, five rounds, SEED by default)."""
    base = dict(M=2, T=5, samples_per_round=20, epochs=2, batch_size=10, width=4, device="cpu",
                task_order="cyclic", method="seed")
    base.update(changes)
    return deep.DeepConfig(**base)


def error_line(capsys) -> str:
    """The command line's one line on stderr (and nothing on stdout)."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert captured.out == ""
    return lines[0]
