"""Deep MoE runs (`moecl.deep`): determinism, exact resume, metrics bookkeeping, bad input."""

import numpy as np
import pytest
import torch

from moecl import data, deep, metrics


@pytest.fixture(scope="module")
def stream():
    """A small one-vs-rest stream on scikit-learn's 8 x 8 digits (ships with the package's dependencies)."""
    return data.one_vs_rest_tasks(data.load_sklearn_digits(), samples_per_task=60, test_samples_per_task=40, seed=0)


def small(**changes):
    base = dict(M=3, T=8, samples_per_round=20, epochs=2, batch_size=10, width=4, device="cpu", T1=3, test_samples=40)
    base.update(changes)
    return deep.DeepConfig(**base)


def test_run_records_and_determinism(stream):
    config = small()
    first = deep.run(config, stream, seed=1)
    again = deep.run(config, stream, seed=1)
    T, M, N = config.T, config.M, stream.N
    assert first.test_loss.shape == first.test_accuracy.shape == (T, M, N)
    assert first.gate_values.shape == (T, M) and first.change_norm.shape == (T,)
    for name in ("tasks", "experts", "test_loss", "test_accuracy", "gate_values", "change_norm"):
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name), err_msg=name)
    other = deep.run(config, stream, seed=2)
    assert not np.array_equal(other.test_loss, first.test_loss)
    # Only the selected expert changes in a round: every other row of the tables stays.
    for t in range(1, T):
        untouched = np.arange(M) != first.experts[t]
        np.testing.assert_array_equal(first.test_loss[t, untouched], first.test_loss[t - 1, untouched])
    assert np.all(first.change_norm > 0)
    np.testing.assert_allclose(first.load().sum(axis=1), 1.0)


def test_resume_gives_the_uninterrupted_numbers(stream, tmp_path, interrupt_training):
    config = small(T=9)
    whole = deep.run(config, stream, seed=3)
    path = tmp_path / "run.pt"
    interrupt_training(6)  # stopped in round 6
    with pytest.raises(KeyboardInterrupt):
        deep.run(config, stream, seed=3, checkpoint=path, checkpoint_every=2)
    interrupt_training(None)
    assert path.exists() and torch.load(path, weights_only=False)["state"]["t"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary files left
    resumed = deep.run(config, stream, seed=3, checkpoint=path, checkpoint_every=2)
    for name in ("tasks", "experts", "test_loss", "test_accuracy", "gate_values", "change_norm"):
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name), err_msg=name)
    assert resumed.termination_round == whole.termination_round
    with pytest.raises(ValueError, match="belongs to another run"):
        deep.run(config, stream, seed=4, checkpoint=path)


def test_termination_freezes_the_gate(stream):
    frozen = deep.run(small(T=10, Gamma=1e9), stream, seed=0)  # every gap below Gamma: stops right after T1
    assert frozen.termination_round == 4
    # From round T2 + 1 on, the gate values come from the same Theta (no step at T2).
    free = deep.run(small(T=10, termination="none"), stream, seed=0)
    assert free.termination_round == -1
    assert np.ptp(free.gate_values[-1]) > 0


def test_single_expert_is_fine_tuning(stream):
    result = deep.run(small(M=1), stream, seed=0)
    assert np.all(result.experts == 0)


def test_resnet_expert_runs():
    model = deep.make_expert(small(architecture="resnet18", width=4), (3, 32, 32), 5)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 5)
    cnn = deep.make_expert(small(), (1, 28, 28), 2)
    assert cnn(torch.zeros(3, 1, 28, 28)).shape == (3, 2)


@pytest.mark.parametrize(
    "changes, message",
    [({"M": 0}, "M=0"), ({"lr": 0.0}, "lr=0.0"), ({"architecture": "vit"}, "architecture='vit'"),
     ({"termination": "never"}, "termination='never'"), ({"device": "tpu"}, "device='tpu'"),
     ({"gate_dim": 0}, "gate_dim=0")],
)
def test_bad_config(changes, message):
    with pytest.raises(ValueError, match=message):
        small(**changes)


def test_bad_run_arguments(stream):
    with pytest.raises(ValueError, match="seed=-1"):
        deep.run(small(), stream, seed=-1)
    with pytest.raises(ValueError, match="DeepConfig"):
        deep.run({"M": 2}, stream)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            deep.run(small(device="cuda"), stream)


def test_continual_learning_metrics_by_hand():
    # Two experts, two task types, three rounds: tasks (0, 1, 0) routed to experts (0, 1, 0).
    tasks, experts = np.array([0, 1, 0]), np.array([0, 1, 0])
    accuracy = np.zeros((3, 2, 2))
    accuracy[0] = [[0.9, 0.5], [0.5, 0.5]]
    accuracy[1] = [[0.9, 0.5], [0.5, 0.8]]
    accuracy[2] = [[0.7, 0.5], [0.5, 0.8]]
    R = metrics.accuracy_matrix(accuracy, tasks, experts)
    expected = np.array([[0.9, np.nan, np.nan], [0.9, 0.8, np.nan], [0.7, 0.8, 0.7]])
    np.testing.assert_allclose(R, expected)
    assert metrics.average_accuracy(R) == pytest.approx((0.7 + 0.8 + 0.7) / 3)
    assert metrics.backward_transfer(R) == pytest.approx(((0.7 - 0.9) + (0.8 - 0.8)) / 2)
    assert metrics.accuracy_forgetting(R) == pytest.approx(0.1)
    loss = 1 - accuracy
    F, G = metrics.forgetting_and_generalization(loss, tasks, experts)
    assert np.isnan(F[0])
    assert F[1] == pytest.approx(0.0)  # task 1 (type 0, expert 0) unchanged by round 2
    assert F[2] == pytest.approx(((0.3 - 0.1) + (0.2 - 0.2)) / 2)
    assert G[2] == pytest.approx((0.3 + 0.2 + 0.3) / 3)
    with pytest.raises(ValueError, match="T=1"):
        metrics.backward_transfer(R[:1, :1])


def test_routing_concentration_and_summary(stream):
    assert metrics.routing_concentration([0, 0, 1, 1], [2, 2, 0, 1], 2) == pytest.approx((1 + 0.5) / 2)
    assert metrics.routing_concentration([0, 1, 0], [0, 0, 0], 3) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one length"):
        metrics.routing_concentration([0, 1], [0], 2)
    records = deep.run(small(), stream, seed=0)
    summary = deep.summarise(records)
    F, G = metrics.forgetting_and_generalization(records.test_loss, records.tasks, records.experts)
    assert summary["forgetting"] == F[-1] and summary["generalization"] == G[-1]
    R = metrics.accuracy_matrix(records.test_accuracy, records.tasks, records.experts)
    assert summary["average_accuracy"] == pytest.approx(np.mean(R[-1]))
