"""SEED-style selection, the Bayes ensemble, the baselines and the scenario metrics of `moecl.deep`."""

import math

import numpy as np
import pytest

from moecl import deep, metrics
from moecl.deep import datasets, training
from moecl.deep import methods
from small_runs import split_digits_stream, tiny


# --------------------------------------------------------------------------- SEED's rule by hand


def test_symmetric_kl_by_hand():
    # p = N(0, 1), q = N(1, 2): KL(p||q) = (1/2 + 1/2 - 1 + ln 2)/2, KL(q||p) = (2 + 1 - 1 - ln 2)/2; sum = 1.
    assert methods.symmetric_kl([0.0], [1.0], [1.0], [2.0]) == pytest.approx(1.0)
    assert methods.symmetric_kl([0.3, -1.0], [0.5, 2.0], [0.3, -1.0], [0.5, 2.0]) == pytest.approx(0.0)
    # Two dimensions add.
    assert methods.symmetric_kl([0.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 1.0]) == pytest.approx(1.0 + 4.0)


def test_kl_rule_picks_the_expert_that_separates_the_classes():
    # Three experts, a task of three classes in D = 2. Expert 1 keeps the classes far apart,
    # expert 0 lets them overlap, expert 2 separates them less than expert 1.
    means = {0: [[0, 0], [0.1, 0], [0, 0.1]], 1: [[0, 0], [3, 0], [0, 3]], 2: [[0, 0], [1, 0], [0, 1]]}
    mu = np.array([means[m] for m in range(3)], dtype=float)
    var = np.ones_like(mu)
    scores = methods.kl_scores(mu, var)
    # Unit variances: KL_sym = |mu_i - mu_j|^2, so expert 1's mean over the three pairs is (9 + 9 + 18) / 3.
    np.testing.assert_allclose(scores, [(0.01 + 0.01 + 0.02) / 3, 12.0, 4 / 3])
    assert int(np.argmax(scores)) == 1
    # Wide variances in expert 1 make its classes overlap: the rule moves to expert 2.
    var[1] = 100.0
    assert int(np.argmax(methods.kl_scores(mu, var))) == 2


def test_bayes_ensemble_by_hand():
    # Two experts, 1-d features, classes c0, c1; one image with features z = (0.5 in expert 0, 2.0 in expert 1).
    features = np.array([[[0.5]], [[2.0]]])
    mu = np.array([[[0.0], [1.0]], [[2.0], [0.0]]])
    var = np.array([[[1.0], [1.0]], [[1.0], [4.0]]])

    def log_normal(z, m, v):
        return -0.5 * (math.log(2 * math.pi * v) + (z - m) ** 2 / v)

    score = [(log_normal(0.5, 0.0, 1.0) + log_normal(2.0, 2.0, 1.0)) / 2,
             (log_normal(0.5, 1.0, 1.0) + log_normal(2.0, 0.0, 4.0)) / 2]
    expected = np.array(score) - math.log(math.exp(score[0]) + math.exp(score[1]))
    np.testing.assert_allclose(methods.bayes_ensemble_log_posterior(features, mu, var)[0], expected)
    np.testing.assert_allclose(np.exp(methods.bayes_ensemble_log_posterior(features, mu, var)).sum(axis=1), 1.0)


def test_fit_gaussian_shrinks_the_variance():
    features = np.array([[0.0, 1.0], [2.0, 1.0]])  # per-dimension variances 1 and 0
    mean, var = methods.fit_gaussian(features, shrinkage=0.5)
    np.testing.assert_allclose(mean, [1.0, 1.0])
    np.testing.assert_allclose(var, [0.5 * 1 + 0.5 * 0.5 + 1e-4, 0.5 * 0 + 0.5 * 0.5 + 1e-4])


def test_replay_training_set_covers_every_type_seen():
    config = deep.DeepConfig(M=1, method="replay", device="cpu")
    method = methods.make_method(config, None, {})
    state = method.initial_state()
    rng = np.random.default_rng(0)
    first = method.training_set(state, 1, 2, np.array([5, 6, 7]), rng)
    assert list(first) == [2]
    second = method.training_set(state, 2, 0, np.array([1, 2]), rng)
    assert sorted(second) == [0, 2] and len(second[2]) == 2 and set(second[2]) <= {5, 6, 7}
    np.testing.assert_array_equal(second[0], [1, 2])


# --------------------------------------------------------------------------- metrics on hand-made tables


def hand_records(method="seed"):
    """Three rounds over two task types (tasks 0, 1, 0), one expert, hand-made tables."""
    T, M, N = 3, 1, 2
    ensemble = np.array([[0.9, np.nan], [0.8, 0.7], [0.85, 0.6]])
    classes = np.array([[0.9, np.nan], [0.4, 0.7], [0.5, 0.3]])
    return deep.RoundRecords(
        tasks=np.array([0, 1, 0]), experts=np.zeros(T, dtype=np.int64),
        test_loss=np.zeros((T, M, N)), test_accuracy=np.full((T, M, N), 0.5),
        gate_values=np.zeros((T, M)), change_norm=np.ones(T), method=method, scenario="class",
        ensemble_loss=1 - ensemble, ensemble_accuracy=ensemble, class_loss=1 - classes, class_accuracy=classes)


def test_scenario_metrics_by_hand():
    records = hand_records()
    R = deep.accuracy_matrix(records, "task")  # SEED: the ensemble's table
    np.testing.assert_allclose(R, [[0.9, np.nan, np.nan], [0.8, 0.7, np.nan], [0.85, 0.6, 0.85]])
    summary = deep.summarise(records, scenario="task")
    assert summary["average_accuracy"] == pytest.approx((0.85 + 0.6 + 0.85) / 3)
    assert summary["backward_transfer"] == pytest.approx(((0.85 - 0.9) + (0.6 - 0.7)) / 2)
    # Chaudhry et al.'s forgetting: best earlier accuracy minus final, tasks 1 and 2: (0.9 - 0.85, 0.7 - 0.6).
    assert summary["average_forgetting"] == pytest.approx(0.075)
    # Test loss 1 - accuracy: F_3 = mean over tasks 1, 2 of the loss growth; G_3 = mean final loss.
    assert summary["forgetting"] == pytest.approx(((0.15 - 0.1) + (0.4 - 0.3)) / 2)
    assert summary["generalization"] == pytest.approx((0.15 + 0.4 + 0.15) / 3)
    Rc = deep.accuracy_matrix(records, "class")
    np.testing.assert_allclose(Rc[-1], [0.5, 0.3, 0.5])
    assert deep.summarise(records, scenario="class")["average_accuracy"] == pytest.approx(1.3 / 3)
    # Without an ensemble table, the task-incremental prediction is the expert that learned the task.
    plain = hand_records("finetune")
    plain.ensemble_accuracy = plain.ensemble_loss = None
    np.testing.assert_allclose(deep.accuracy_matrix(plain)[-1], 0.5)


def test_bad_scenarios():
    records = hand_records()
    with pytest.raises(ValueError, match="scenario='domain'"):
        deep.accuracy_matrix(records, "domain")
    records.class_accuracy = records.class_loss = None
    records.scenario = "one-vs-rest"
    with pytest.raises(ValueError, match="one-vs-rest"):
        deep.summarise(records, scenario="class")


# --------------------------------------------------------------------------- tiny CPU runs


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def split_digits():
    return split_digits_stream()


FIELDS = ("tasks", "experts", "test_loss", "test_accuracy", "gate_values", "change_norm", "ensemble_loss",
          "ensemble_accuracy", "class_loss", "class_accuracy")


def test_seed_run_is_deterministic_and_follows_its_rule(split_digits):
    config = tiny(T=4)
    first, again = deep.run(config, split_digits, seed=1), deep.run(config, split_digits, seed=1)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name), err_msg=name)
    np.testing.assert_array_equal(first.tasks, [0, 1, 2, 0])  # cyclic order
    # SEED fills its M experts first, then fine-tunes the expert of the largest KL score.
    np.testing.assert_array_equal(first.experts[:2], [0, 1])
    assert np.all(np.isnan(first.gate_values[:2]))
    np.testing.assert_array_equal(first.experts[2:], np.argmax(first.gate_values[2:], axis=1))
    assert first.termination_round == -1
    # Class-incremental tables exist for seen types only; the ensemble's probabilities are honest.
    assert np.isnan(first.class_accuracy[0, 1:]).all() and not np.isnan(first.class_accuracy[2]).any()
    assert np.all((first.ensemble_accuracy[2:] >= 0) & (first.ensemble_accuracy[2:] <= 1))
    summary = deep.summarise(first, scenario="class")
    R = deep.accuracy_matrix(first, "class")
    assert summary["average_accuracy"] == pytest.approx(np.mean(R[-1]))
    assert summary["backward_transfer"] == pytest.approx(np.mean(R[-1, :-1] - np.diag(R)[:-1]))


@pytest.mark.parametrize("method, M", [("finetune", 1), ("replay", 1), ("joint", 1), ("gate", 2)])
def test_baselines_and_gate_run_in_both_scenarios(split_digits, method, M):
    records = deep.run(tiny(method=method, M=M, T=4), split_digits, seed=0)
    assert records.method == method and records.ensemble_accuracy is None
    if M == 1:
        assert np.all(records.experts == 0)
    for scenario in deep.SCENARIOS:
        R = deep.accuracy_matrix(records, scenario)
        assert R.shape == (4, 4) and np.all(np.isfinite(np.tril(R)[np.tril_indices(4)]))
        summary = deep.summarise(records, scenario=scenario)
        assert summary["average_accuracy"] == pytest.approx(metrics.average_accuracy(R))


def test_seed_run_resumes_exactly(split_digits, tmp_path, interrupt_training):
    config = tiny(T=4)
    whole = deep.run(config, split_digits, seed=2)
    path = tmp_path / "seed.pt"
    interrupt_training(4)  # stopped in round 4
    with pytest.raises(KeyboardInterrupt):
        deep.run(config, split_digits, seed=2, checkpoint=path, checkpoint_every=2)
    interrupt_training(None)
    resumed = deep.run(config, split_digits, seed=2, checkpoint=path, checkpoint_every=2)
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(resumed, name), getattr(whole, name), err_msg=name)


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    "changes, message",
    [({"method": "ewc"}, "method='ewc'"), ({"method": "finetune", "M": 2}, "M must be 1, got M=2"),
     ({"method": "joint", "M": 3}, "method='joint'"), ({"method": "replay", "M": 2}, "method='replay'"),
     ({"task_order": "sorted"}, "task_order='sorted'"),
     ({"shrinkage": 1.5}, "shrinkage=1.5"), ({"shrinkage": -0.1}, "shrinkage=-0.1")],
)
def test_bad_config(changes, message):
    with pytest.raises(ValueError, match=message):
        tiny(**changes)


def test_bad_gaussians():
    with pytest.raises(ValueError, match="k=1"):
        methods.kl_scores(np.zeros((2, 1, 3)), np.ones((2, 1, 3)))
    with pytest.raises(ValueError, match=r"\(M, k, D\)"):
        methods.kl_scores(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="var must be positive"):
        methods.kl_scores(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))
    with pytest.raises(ValueError, match=r"\(M, n, D\)"):
        methods.bayes_ensemble_log_posterior(np.zeros((2, 4, 3)), np.zeros((3, 2, 3)), np.ones((3, 2, 3)))


def test_training_loss_is_masked_to_the_classes_present(split_digits):
    # Book choice of `moecl.deep.training.train`: the cross-entropy runs over the outputs of the classes present,
    # so the output-layer rows of the other classes get no gradient and Adam leaves them exactly in place.
    import torch

    config = tiny()
    torch.manual_seed(0)
    model = deep.make_expert(config, split_digits.image_shape, split_digits.num_outputs)
    last = model.classifier[-1]
    before = last.weight.detach().clone()
    task = split_digits[1]  # classes 2 and 3
    training.train(model, task.train_images[:20], task.train_labels[:20], config, np.random.default_rng(0),
                torch.device("cpu"))
    moved = torch.any(last.weight.detach() != before, dim=1).numpy()
    np.testing.assert_array_equal(moved, [False, False, True, True, False, False])


# --------------------------------------------------------------------------- the deep-methods experiment's streams


def write_tiny_imagenet_classes(root, num_classes=20, train_per_class=3, val_per_class=20, size=8):
    """A Tiny ImageNet folder in the official layout (``wnids.txt``, ``train/<wnid>/images``,
    ``val/val_annotations.txt``) with ``num_classes`` classes of small flat-colour JPEGs."""
    from PIL import Image

    folder = root / datasets.TINY_IMAGENET_FOLDER
    (folder / "val" / "images").mkdir(parents=True)
    wnids = [f"n{k:08d}" for k in range(1, num_classes + 1)]
    (folder / "wnids.txt").write_text("\n".join(wnids) + "\n")
    annotations = []
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        colour = (10 * label, 255 - 10 * label, 128)
        for i in range(train_per_class):
            Image.new("RGB", (size, size), colour).save(images / f"{wnid}_{i}.JPEG", "JPEG")
        for i in range(val_per_class):
            name = f"val_{label}_{i}.JPEG"
            Image.new("RGB", (size, size), colour).save(folder / "val" / "images" / name, "JPEG")
            annotations.append(f"{name}\t{wnid}\t0\t0\t{size - 1}\t{size - 1}")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(annotations) + "\n")
    return wnids


def test_deep_methods_runs_on_tiny_imagenet(tmp_path, monkeypatch):
    """``moecl run deep-methods --set stream=tiny-imagenet``: the first 20 classes of ``wnids.txt``
    in five four-class tasks, every method, both scenarios, numbers from the accuracy matrices."""
    from moecl import experiments

    write_tiny_imagenet_classes(tmp_path)
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))
    header, arrays = experiments.run_experiment("deep-methods", scale="ci", seed=3, replicates=2, rounds=6,
                                                overrides={"stream": "tiny-imagenet", "width": 4, "epochs": 1})
    assert header["stream"] == "tiny-imagenet" and header["source"].startswith("Tiny ImageNet from")
    assert "20 of 20 classes" in header["source"] and header["seeds"] == [3, 4]
    for label, (method, M) in experiments.DEEP_METHODS.items():
        config = header["configs"][label]
        assert (config["method"], config["M"], config["T"]) == (method, M, 6)
        assert (config["width"], config["epochs"], config["device"]) == (4, 1, "cpu")  # --set, and CPU by default
        for scenario in deep.SCENARIOS:
            matrix = arrays[f"{label}/{scenario}/accuracy_matrix"]
            assert matrix.shape == (2, 6, 6)
            np.testing.assert_allclose(arrays[f"{label}/{scenario}/average_accuracy"],
                                       np.nanmean(matrix[:, -1], axis=1))
            np.testing.assert_allclose(arrays[f"{label}/{scenario}/backward_transfer"],
                                       [np.mean(R[-1, :-1] - np.diag(R)[:-1]) for R in matrix])


def test_deep_methods_tiny_imagenet_classes_set_the_stream_and_the_rounds(tmp_path, monkeypatch):
    """``--set classes=8``: the first eight classes in two four-class tasks; the CI preset's two
    cycles through them are four rounds (the full-size stream is ``classes=200``)."""
    from moecl import experiments

    write_tiny_imagenet_classes(tmp_path, num_classes=12)
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))
    header, arrays = experiments.run_experiment("deep-methods", scale="ci", seed=0, replicates=2, overrides={
        "stream": "tiny-imagenet", "classes": 8, "width": 4, "epochs": 1, "samples_per_round": 8})
    assert "8 of 12 classes" in header["source"] and header["rounds"] == 4
    assert arrays["joint/class/accuracy_matrix"].shape == (2, 4, 4)


def test_deep_methods_stream_and_overrides_are_checked(tmp_path, monkeypatch):
    from moecl import experiments

    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path))  # an empty data directory
    with pytest.raises(ValueError, match="stream='imagenet'"):
        experiments.run_experiment("deep-methods", overrides={"stream": "imagenet"})
    with pytest.raises(ValueError, match="--set M: deep-methods sets M itself"):
        experiments.run_experiment("deep-methods", overrides={"stream": "cifar10", "M": 2})
    with pytest.raises(ValueError, match="stream='tiny-imagenet' needs data .*wnids.txt"):
        experiments.run_experiment("deep-methods", overrides={"stream": "tiny-imagenet"}, replicates=2, rounds=2)
    with pytest.raises(ValueError, match="classes=6 must be a multiple of 4"):
        experiments.run_experiment("deep-methods", overrides={"stream": "tiny-imagenet", "classes": 6})
    with pytest.raises(ValueError, match="classes=8 applies to stream='tiny-imagenet' only"):
        experiments.run_experiment("deep-methods", overrides={"stream": "cifar10", "classes": 8})
    with pytest.raises(ValueError, match="device='tpu'"):
        experiments.run_experiment("deep-methods", overrides={"device": "tpu"}, replicates=2, rounds=2)
