"""Deep MoE runs (`moecl.deep`): determinism, exact resume, metrics bookkeeping, bad input."""

import dataclasses

import numpy as np
import pytest
import torch

from moecl import deep, metrics
from moecl.deep import datasets, streams, training
from moecl.deep.checkpoint import read_checkpoint


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def stream():
    """A small one-vs-rest stream on scikit-learn's 8 x 8 digits (ships with the package's dependencies)."""
    return streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), samples_per_task=60, test_samples_per_task=40, seed=0)


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
    assert path.exists() and read_checkpoint(path)[0]["t"] == 4
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


# --------------------------------------------------------------------------- replicates batched


@pytest.fixture(scope="module")
def class_stream():
    """Three two-class tasks numbered over the whole stream: replicates training different tasks in
    one round have different present classes, so the stacked training masks different columns."""
    return streams.class_split_tasks(datasets.load_sklearn_digits(), [[0, 1], [2, 3], [4, 5]], scenario="class",
                                  samples_per_task=60, test_samples_per_task=30, seed=0)


RECORDED = ("tasks", "experts", "test_loss", "test_accuracy", "gate_values", "change_norm")


def float64_digits():
    """scikit-learn's digits with float64 images: with torch's default dtype float64 the whole run is float64."""
    digits = datasets.load_sklearn_digits()
    return dataclasses.replace(digits, train_images=digits.train_images.astype(np.float64),
                               test_images=digits.test_images.astype(np.float64))


@pytest.fixture
def float64_torch():
    """torch's default dtype float64 for one test (the experts are built in it), then float32 again."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("which", ["gate, cnn, one-vs-rest", "gate, cnn, class-incremental",
                                   "replay, cnn, class-incremental", "joint, cnn, class-incremental",
                                   "seed, cnn, class-incremental", "gate, resnet18, class-incremental"])
def test_batched_replicates_are_their_runs_alone_in_float64(which, float64_torch):
    # The same code in float64: a replicate of a batch must be its seed's run alone up to float64
    # rounding (1e-16 relative per operation; even amplified by training as much as the float32 runs
    # below amplify theirs, about 1e5, it stays under 1e-9). This checks the stacked training
    # (per-replicate batches, masks and Adams, written back) and the stacked evaluation as a whole.
    method, architecture, scenario = which.split(", ")
    digits = float64_digits()
    if scenario == "one-vs-rest":
        tasks = streams.one_vs_rest_tasks(digits, samples_per_task=60, test_samples_per_task=40, seed=0)
    else:
        tasks = streams.class_split_tasks(digits, [[0, 1], [2, 3], [4, 5]], scenario="class", samples_per_task=60,
                                       test_samples_per_task=30, seed=0)
    config = small(T=5, M=1 if method in ("replay", "joint") else 2, T1=2, method=method, architecture=architecture,
                   width=2 if architecture == "resnet18" else 4)
    seeds = [4, 1, 6]
    batched = deep.run(config, tasks, seed=seeds)
    assert isinstance(batched, list) and len(batched) == len(seeds)
    assert batched[0].test_loss.dtype == np.float64 and next(deep.make_expert(config, (1, 8, 8), 2).parameters()).dtype == torch.float64
    # The batch really mixes replicates on different task types in some round (different present
    # classes; for joint training, training sets of different sizes, trained in separate groups).
    assert np.any(np.ptp(np.array([r.tasks for r in batched]), axis=0) > 0)
    for k, seed in enumerate(seeds):
        single = deep.run(config, tasks, seed=seed)
        for name in ("tasks", "experts"):
            np.testing.assert_array_equal(getattr(batched[k], name), getattr(single, name), err_msg=f"{name}, {k}")
        assert batched[k].termination_round == single.termination_round
        for name in ("test_loss", "test_accuracy", "gate_values", "change_norm"):
            np.testing.assert_allclose(getattr(batched[k], name), getattr(single, name), rtol=1e-9, atol=1e-12,
                                       err_msg=f"{name}, replicate {k}")
        if scenario == "class-incremental":
            np.testing.assert_allclose(batched[k].class_loss, single.class_loss, rtol=1e-9, atol=1e-12)
    assert not np.allclose(batched[0].test_loss, batched[1].test_loss)  # replicates stay independent


def test_batched_replicates_match_their_runs_alone_in_float32(stream):
    config, seeds = small(T=6), [4, 1, 6]
    batched = deep.run(config, stream, seed=seeds)
    alone = [deep.run(config, stream, seed=s) for s in seeds]
    # One seed in a list is the plain single-seed run, bit for bit.
    for name in RECORDED:
        np.testing.assert_array_equal(getattr(deep.run(config, stream, seed=[seeds[0]])[0], name),
                                      getattr(alone[0], name), err_msg=name)
    for k, (inside, single) in enumerate(zip(batched, alone)):
        for name in ("tasks", "experts"):
            np.testing.assert_array_equal(getattr(inside, name), getattr(single, name), err_msg=f"{name}, {k}")
        # float32: the stacked convolutions sum in another order than the single network's (the
        # float64 test above shows the algorithm agrees exactly), so each step differs by float32
        # rounding, ~1e-7 relative, which training then amplifies. Measured on this small
        # configuration: at most 3e-8 relative in the test losses and 2e-5 in the change norms;
        # 1e-4 relative leaves 5x headroom. (Longer runs amplify more, see the benchmark's README.)
        for name in ("test_loss", "gate_values", "change_norm"):
            np.testing.assert_allclose(getattr(inside, name), getattr(single, name), rtol=1e-4, atol=1e-7,
                                       err_msg=f"{name}, replicate {k}")


def test_stacked_training_masks_each_replicates_absent_classes(class_stream):
    # Two replicates trained at once on tasks with classes {2, 3} and {4, 5}: in each expert only the
    # output-layer rows of its own task's classes move (the masked cross-entropy of `moecl.deep.training.train`).
    config = small()
    torch.manual_seed(0)
    models = [deep.make_expert(config, class_stream.image_shape, class_stream.num_outputs) for _ in range(2)]
    before = [model.classifier[-1].weight.detach().clone() for model in models]
    tasks = [class_stream[1], class_stream[2]]
    training.train(models, [task.train_images[:20] for task in tasks], [task.train_labels[:20] for task in tasks],
                config, [np.random.default_rng(0), np.random.default_rng(1)], torch.device("cpu"))
    for model, old, expected in zip(models, before, ([0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1])):
        moved = torch.any(model.classifier[-1].weight.detach() != old, dim=1).numpy()
        np.testing.assert_array_equal(moved, np.array(expected, dtype=bool))


def test_multi_seed_resume_gives_the_uninterrupted_numbers(stream, tmp_path, interrupt_training):
    config, seeds = small(T=7), [3, 5]
    whole = deep.run(config, stream, seed=seeds)
    path = tmp_path / "replicates.pt"
    interrupt_training(5)  # one training call per round for all replicates: stopped in round 5
    with pytest.raises(KeyboardInterrupt):
        deep.run(config, stream, seed=seeds, checkpoint=path, checkpoint_every=2)
    interrupt_training(None)
    assert read_checkpoint(path)[0]["t"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["replicates.pt"]  # written atomically
    resumed = deep.run_replicates(config, stream, seeds, checkpoint=path, checkpoint_every=2)
    for k in range(len(seeds)):
        for name in RECORDED:
            np.testing.assert_array_equal(getattr(resumed[k], name), getattr(whole[k], name), err_msg=f"{name}, {k}")
        assert resumed[k].termination_round == whole[k].termination_round
    for other in ([5, 3], [3], 3):
        with pytest.raises(ValueError, match="belongs to another run"):
            deep.run(config, stream, seed=other, checkpoint=path)


@pytest.mark.parametrize(
    "seeds, message",
    [([], r"seed=\[\] must hold at least one seed"), ([1, -2], "seed=-2"), ([2, 1, 2], "repeats seed 2"),
     ([1, 2.5], "seed=2.5"), ("7", "seed='7'"), ([True], "seed=True")],
)
def test_bad_seeds(stream, seeds, message):
    with pytest.raises(ValueError, match=message):
        deep.run(small(), stream, seed=seeds)


def test_run_replicates_wants_a_sequence(stream):
    with pytest.raises(ValueError, match="seeds=3 must be a sequence"):
        deep.run_replicates(small(), stream, 3)
    with pytest.raises(ValueError, match=r"seeds=\[\] must hold"):
        deep.run_replicates(small(), stream, [])
