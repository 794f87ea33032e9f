"""Fixtures shared by the test files."""

import dataclasses
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _same_setting(stored: dict, fresh: dict) -> bool:
    """A stored setting equals a fresh one; a `Config` field added after the file was
    written must be at its default in the fresh setting (the file ran with that behaviour:
    new fields default to the paper's mechanism, which leaves every number unchanged)."""
    import moecl

    defaults = {field.name: field.default for field in dataclasses.fields(moecl.Config)}
    if set(stored) - set(fresh):
        return False
    return all(stored[key] == value if key in stored else value == defaults[key] for key, value in fresh.items())


@pytest.fixture
def same_setting():
    """``same_setting(stored, fresh)``: a stored results file's setting matches a fresh one."""
    return _same_setting


@pytest.fixture
def stored_paper_results():
    """``stored_paper_results(name, replicates, rounds)``: header, arrays and path of the
    committed ``results/<name>-paper-seed0.npz``, after checking that it is experiment
    ``name``'s paper-scale run of seed 0 with the registry's description, R and T; skips
    when the file has not been generated. Compare its settings with ``same_setting``."""
    from moecl.experiments import EXPERIMENTS
    from moecl.results import load_results

    def load(name: str, replicates: int, rounds: int):
        path = RESULTS / f"{name}-paper-seed0.npz"
        if not path.exists():
            pytest.skip(f"{path} not generated (python -m moecl run {name} --scale paper --out results)")
        header, arrays = load_results(path)
        assert (header["experiment"], header["scale"], header["seed"]) == (name, "paper", 0)
        assert header["description"] == EXPERIMENTS[name].description
        assert (header["replicates"], header["rounds"]) == (replicates, rounds)
        return header, arrays, path

    return load


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks run fastest on one thread on a shared CPU; the setting is restored afterwards.

    Test files of torch runs use it for all their tests:
    ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def interrupt_training(monkeypatch):
    """``interrupt_training(n)``: the n-th expert training of `moecl.deep.run` raises
    KeyboardInterrupt (a run stopped mid-way); ``interrupt_training(None)`` restores it."""
    from moecl.deep import engine

    original = engine.train

    def interrupt(n):
        if n is None:
            monkeypatch.setattr(engine, "train", original)
            return
        calls = {"n": 0}

        def train(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt("stopped mid-way")
            return original(*args, **kwargs)

        monkeypatch.setattr(engine, "train", train)

    return interrupt
