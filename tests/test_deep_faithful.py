"""Faithfulness of the deep methods: SEED's masked ensemble and feature distillation, true joint training,
both forgetting measures, a gate that sees only past data, the locality signal, the gate input, both scoring
rules, and the float32 evaluation of the GPU path. Each test fails on the behaviour it replaced."""

import math

import numpy as np
import pytest
import torch

from moecl import deep
from moecl.deep import engine, training
from moecl.deep import methods
from small_runs import split_digits_stream, tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def split_digits():
    return split_digits_stream()


# --------------------------------------------------------------------------- 1. SEED's ensemble masks unfitted pairs


def test_bayes_ensemble_leaves_out_pairs_never_fitted():
    # Expert 1 never fitted class 1: its placeholder N(0, 1) sits right on the image's feature and would
    # make class 1 win. Masked, class 1's score is expert 0's alone and class 0 (fitted by both) wins.
    features = np.array([[[0.0]], [[0.0]]])  # one image, 1-d features, two experts
    mu = np.array([[[0.0], [3.0]], [[0.5], [0.0]]])
    var = np.ones_like(mu)
    fitted = np.array([[True, True], [True, False]])

    def log_normal(z, m):
        return -0.5 * (math.log(2 * math.pi) + (z - m) ** 2)

    score = np.array([(log_normal(0, 0.0) + log_normal(0, 0.5)) / 2, log_normal(0, 3.0)])
    expected = score - np.log(np.exp(score).sum())
    np.testing.assert_allclose(methods.bayes_ensemble_log_posterior(features, mu, var, fitted)[0], expected)
    unmasked = methods.bayes_ensemble_log_posterior(features, mu, var)[0]
    assert not np.allclose(unmasked, expected)  # the old ensemble: the placeholder votes
    # A class nobody fitted cannot be predicted.
    nobody = methods.bayes_ensemble_log_posterior(features, mu, var, np.array([[True, False], [True, False]]))
    assert nobody[0, 1] == -np.inf and nobody[0, 0] == pytest.approx(0.0)


def test_seed_method_records_which_expert_fitted_which_class(split_digits):
    # Cyclic tasks {0,1}, {2,3}: expert 0 learns task 0 in round 1; expert 1 joins in round 2 and fits
    # only task 1's classes. The ensemble over classes 0..3 must not let expert 1 vote on classes 0, 1.
    config = tiny(T=2)
    context = engine._context(config, split_digits, np.random.SeedSequence(0))
    context["feature_dim"] = 3
    method = methods.make_method(config, split_digits, context)
    state = method.initial_state()
    rng = np.random.default_rng(0)

    def embed(k, images):
        return rng.standard_normal((len(images), 3)) + k

    for t, n in ((1, 0), (2, 1)):
        task = split_digits[n]
        m, scores = method.select(state, t, n, task.train_images, task.train_labels, rng, embed)
        method.after_training(state, t, n, m, task.train_images, task.train_labels, scores, 0.0, embed)
    np.testing.assert_array_equal(state["fitted_pairs"][:, :4], [[True, True, True, True],
                                                                [False, False, True, True]])
    features = rng.standard_normal((2, 5, 3))
    classes = np.arange(4)
    expected = methods.bayes_ensemble_log_posterior(features, state["mu"][:, classes], state["var"][:, classes],
                                               state["fitted_pairs"][:, classes])
    np.testing.assert_allclose(method.ensemble(state, features, classes), expected)


# --------------------------------------------------------------------------- 2. SEED's feature distillation


def test_seed_distillation_is_on_by_default_and_keeps_features_close(split_digits):
    assert deep.DeepConfig(method="seed").seed_distillation > 0
    config = tiny(epochs=5)
    torch.manual_seed(0)
    first = deep.make_expert(config, split_digits.image_shape, split_digits.num_outputs)
    task0, task1 = split_digits[0], split_digits[1]
    training.train(first, task0.train_images, task0.train_labels, config, np.random.default_rng(0),
                   torch.device("cpu"))
    probe = torch.as_tensor(np.array(task0.test_images))
    with torch.no_grad():
        before = first.embed(probe)
    drift = {}
    for weight in (0.0, 10.0):
        model = deep.make_expert(config, split_digits.image_shape, split_digits.num_outputs)
        model.load_state_dict(first.state_dict())
        training.train(model, task1.train_images, task1.train_labels, config, np.random.default_rng(1),
                       torch.device("cpu"), distill=weight)
        with torch.no_grad():
            drift[weight] = float(torch.mean((model.embed(probe) - before) ** 2))
    assert drift[10.0] < 0.5 * drift[0.0], drift


def test_seed_distils_only_experts_trained_before(split_digits):
    method = methods.make_method(tiny(seed_distillation=2.0), split_digits,
                                {"num_classes": 6, "feature_dim": 3, "class_index": lambda n, y: y})
    state = method.initial_state()
    assert method.distillation(state, 0) == 0.0  # a fresh expert has no previous version
    state["trained"][0] = True
    assert method.distillation(state, 0) == 2.0
    one_network = methods.make_method(tiny(method="finetune", M=1), split_digits, {})
    assert one_network.distillation({}, 0) == 0.0


# --------------------------------------------------------------------------- 3. joint = offline training; replay


def test_joint_trains_from_scratch_on_everything_seen(split_digits):
    config = tiny(method="joint", M=1, T=4, joint_refit_every=4)
    method = methods.make_method(config, split_digits, {})
    state = method.initial_state()
    rng = np.random.default_rng(0)
    assert method.training_set(state, 1, 0, np.array([1, 2]), rng) == {}  # between refits: no training
    assert not method.refit(state, 1)
    method.training_set(state, 2, 1, np.array([3]), rng)
    method.training_set(state, 3, 0, np.array([2, 5]), rng)
    last = method.training_set(state, 4, 2, np.array([7]), rng)
    assert method.refit(state, 4)
    assert {k: list(v) for k, v in last.items()} == {0: [1, 2, 5], 1: [3], 2: [7]}
    # In a run, rows before the refit are the untrained network, the last row the fit on everything.
    records = deep.run(config, split_digits, seed=0)
    np.testing.assert_array_equal(records.test_loss[0], records.test_loss[2])
    assert not np.array_equal(records.test_loss[3], records.test_loss[2])
    # A refit restarts from the initial weights: the network is the same before round 1 in every run.
    every = deep.run(config.replace(joint_refit_every=2), split_digits, seed=0)
    np.testing.assert_array_equal(every.test_loss[0], records.test_loss[0])
    assert not np.array_equal(every.test_loss[1], records.test_loss[1])


# --------------------------------------------------------------------------- 4. BWT and Chaudhry's forgetting


def test_backward_transfer_and_max_forgetting_by_hand():
    # Task 0 peaks at 0.9 in round 2 (learned at 0.6) and ends at 0.7: -BWT = 0.6 - 0.7 < 0 (no "forgetting"),
    # Chaudhry's forgetting = 0.9 - 0.7 > 0. Task 1: learned 0.8, ends 0.8.
    R = np.array([[0.6, np.nan, np.nan], [0.9, 0.8, np.nan], [0.7, 0.8, 0.5]])
    assert deep.max_forgetting(R) == pytest.approx(((0.9 - 0.7) + (0.8 - 0.8)) / 2)
    from moecl import metrics

    assert metrics.backward_transfer(R) == pytest.approx(((0.7 - 0.6) + 0.0) / 2)
    with pytest.raises(ValueError, match="T >= 2"):
        deep.max_forgetting(np.ones((1, 1)))


# --------------------------------------------------------------------------- 5. the gate sees only past data


def test_gate_centring_uses_only_data_already_seen(split_digits):
    # Cyclic order: task 2 is first drawn in round 3. Changing its images must not change anything the
    # gate did in rounds 1-2 (the old centre, the mean over all tasks' training sets, did).
    import dataclasses

    config = tiny(method="gate", T=3, T1=2)
    altered_task = dataclasses.replace(split_digits[2], train_images=split_digits[2].train_images * 0.5,
                                       test_images=split_digits[2].test_images)
    altered = dataclasses.replace(split_digits, tasks=(split_digits[0], split_digits[1], altered_task))
    a, b = deep.run(config, split_digits, seed=1), deep.run(config, altered, seed=1)
    np.testing.assert_array_equal(a.gate_values[:2], b.gate_values[:2])
    np.testing.assert_array_equal(a.experts[:2], b.experts[:2])
    assert not np.array_equal(a.gate_values[2], b.gate_values[2])


def test_running_centre_is_the_mean_of_the_batch_features_so_far(split_digits):
    config = tiny(method="gate", gate_input="mean-image")
    context = engine._context(config, split_digits, np.random.SeedSequence(0))
    method = methods.make_method(config, split_digits, context)
    state = method.initial_state()
    rng = np.random.default_rng(0)
    batches = [split_digits[n].train_images[:10] for n in (0, 1, 2)]
    for t, images in enumerate(batches, start=1):
        method.select(state, t, 0, images, None, rng, None)
    means = [images.reshape(10, -1).mean(axis=0, dtype=np.float64) for images in batches]
    np.testing.assert_allclose(method.centre(state), np.mean(means, axis=0))
    np.testing.assert_allclose(state["xbar"], means[2] - np.mean(means, axis=0))
    none = methods.make_method(config.replace(gate_centring="none"), split_digits, context)
    assert not none.centre(none.initial_state()).any()


# --------------------------------------------------------------------------- 6. the locality signal


def test_gradient_signal_is_small_for_the_task_an_expert_knows(split_digits):
    assert deep.DeepConfig().locality_signal == "gradient"
    config = tiny(epochs=30, lr=5e-3)
    torch.manual_seed(0)
    model = deep.make_expert(config, split_digits.image_shape, split_digits.num_outputs)
    known, unknown = split_digits[0], split_digits[1]
    training.train(model, known.train_images, known.train_labels, config, np.random.default_rng(0),
                   torch.device("cpu"))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    on_known = training.locality_signals(model, known.train_images, known.train_labels, torch.device("cpu"))
    on_unknown = training.locality_signals(model, unknown.train_images, unknown.train_labels, torch.device("cpu"))
    assert on_known["gradient"] < 0.2 * on_unknown["gradient"], (on_known, on_unknown)
    assert on_known["loss"] < 0.2 * on_unknown["loss"]
    for k, v in model.state_dict().items():  # measuring changes nothing
        assert torch.equal(v, state[k])


def test_the_gate_uses_the_configured_signal(split_digits):
    config = tiny(method="gate", T=4, T1=2)
    gradient = deep.run(config, split_digits, seed=0)
    change = deep.run(config.replace(locality_signal="change"), split_digits, seed=0)
    np.testing.assert_array_equal(change.locality, change.change_norm)
    assert np.all(gradient.locality > 0) and not np.allclose(gradient.locality, gradient.change_norm)


# --------------------------------------------------------------------------- 7. the gate input


def test_gate_inputs_by_definition():
    images = np.random.default_rng(0).random((6, 3, 4, 4)).astype(np.float32)
    shape = images.shape[1:]
    plain = engine.gate_map(deep.DeepConfig(gate_input="mean-image"), shape, np.random.SeedSequence(1))
    np.testing.assert_allclose(plain(images), images.reshape(6, -1))
    colour = engine.gate_map(deep.DeepConfig(gate_input="colour-stats", gate_dim=5), shape,
                             np.random.SeedSequence(1))(images)
    assert colour.shape == (6, 3 + 3 + 5)
    np.testing.assert_allclose(colour[:, :3], images.reshape(6, 3, -1).mean(axis=2), rtol=1e-6)
    np.testing.assert_allclose(colour[:, 3:6], images.reshape(6, 3, -1).std(axis=2), rtol=1e-5)
    features = engine.gate_map(deep.DeepConfig(gate_input="random-features"), shape, np.random.SeedSequence(1))
    assert features(images).shape == (6, 256) and np.all(features(images) >= 0)
    again = engine.gate_map(deep.DeepConfig(gate_input="random-features"), shape, np.random.SeedSequence(1))
    np.testing.assert_array_equal(features(images), again(images))  # fixed by the seed, not by data
    with pytest.raises(ValueError, match="gate_input='pixels'"):
        deep.DeepConfig(gate_input="pixels")


# --------------------------------------------------------------------------- 8. both scoring rules


def test_the_gate_is_scored_under_both_rules():
    # Two experts, two types, rounds 0, 1, 0. Expert 0 learned round 1's task 0, but after round 3 the gate
    # sends type 0 to expert 1: the round rule scores expert 0, the current rule expert 1.
    T, M, N = 3, 2, 2
    accuracy = np.zeros((T, M, N))
    accuracy[:, 0, :] = 0.5
    accuracy[:, 1, :] = 0.9
    records = deep.RoundRecords(
        tasks=np.array([0, 1, 0]), experts=np.array([0, 0, 0]), test_loss=1 - accuracy, test_accuracy=accuracy,
        gate_values=np.zeros((T, M)), change_norm=np.ones(T), method="gate", scenario="one-vs-rest",
        current_experts=np.array([[0, 0], [0, 0], [1, 0]]))
    assert deep.summarise(records, rule="round")["average_accuracy"] == pytest.approx(0.5)
    assert deep.summarise(records, rule="current")["average_accuracy"] == pytest.approx((0.9 + 0.5 + 0.9) / 3)
    with pytest.raises(ValueError, match="rule='best'"):
        deep.summarise(records, rule="best")


def test_a_run_records_the_gates_current_experts(split_digits):
    records = deep.run(tiny(method="gate", T=4, T1=2), split_digits, seed=0)
    assert records.current_experts.shape == (4, split_digits.N)
    assert set(np.unique(records.current_experts)) <= {0, 1}
    one = deep.run(tiny(method="finetune", M=1, T=3), split_digits, seed=0)
    assert deep.summarise(one, rule="current") == deep.summarise(one, rule="round")


# --------------------------------------------------------------------------- GPU path, checked on the CPU


def test_evaluation_stays_full_precision_under_autocast(split_digits):
    config = tiny()
    torch.manual_seed(0)
    model = deep.make_expert(config, split_digits.image_shape, split_digits.num_outputs)
    tests = [training.test_set(task, 10, torch.device("cpu")) for task in split_digits]
    plain = training.test_outputs(model, tests)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as if training's bf16 autocast were still on
        inside = training.test_outputs(model, tests)
        embedded = training.features(model, tests[0][0])
    for (a, za), (b, zb) in zip(plain, inside):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(za, zb)
    np.testing.assert_array_equal(embedded, plain[0][1])


def test_stacked_template_is_built_once(split_digits):
    config = tiny()
    models = [deep.make_expert(config, split_digits.image_shape, split_digits.num_outputs) for _ in range(2)]
    assert training.stacking_template(models[0]) is training.stacking_template(models[1])


def test_deterministic_flag():
    assert deep.DeepConfig().deterministic is True
    with pytest.raises(ValueError, match="deterministic='yes'"):
        deep.DeepConfig(deterministic="yes")
    before = torch.are_deterministic_algorithms_enabled()
    with engine.reproducible(deep.DeepConfig(), torch.device("cpu")):  # the CPU: nothing to change
        assert torch.are_deterministic_algorithms_enabled() == before
