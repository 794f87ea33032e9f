"""Fixtures shared by the test files."""

import pytest


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
    from moecl import deep

    original = deep._train

    def interrupt(n):
        if n is None:
            monkeypatch.setattr(deep, "_train", original)
            return
        calls = {"n": 0}

        def train(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt("stopped mid-way")
            return original(*args, **kwargs)

        monkeypatch.setattr(deep, "_train", train)

    return interrupt
