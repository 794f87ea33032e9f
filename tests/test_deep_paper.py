"""The paper's digits experiment: its network (PaperCNN), the one-sigmoid loss and scoring, and `deep-paper`
(moecl/deep/networks.py, moecl/deep/training.py, moecl/experiments/deep_paper.py; book/deep_paper.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from moecl import deep
from moecl.deep import datasets, streams, training
from moecl.deep.networks import PaperCNN, SmallCNN, make_expert
from moecl.experiments import EXPERIMENTS, deep_paper, run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _digits_stream(test=20):
    return streams.one_vs_rest_tasks(datasets.load_sklearn_digits(), samples_per_task=None,
                                     test_samples_per_task=test, seed=0)


def _tiny(**changes):
    base = dict(architecture="paper-cnn", M=2, T=4, samples_per_round=20, epochs=2, batch_size=10, width=4,
                device="cpu", method="gate", test_samples=20)
    base.update(changes)
    return deep.DeepConfig(**base)


# --------------------------------------------------------------------------- the network


def test_the_network_is_the_papers_five_layers():
    """Two convolutions and three linear layers, ReLU after the first four, one max-pool after the first
    convolution only, one output; the module order is the paper's."""
    model = PaperCNN(1, 2, width=8, image_size=(28, 28))
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d))]
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU",
                     "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    pool = layers[2]
    assert pool.kernel_size == 2 and pool.stride == 2
    assert layers[-1].out_features == 1
    assert layers[5].in_features == 2 * 8 * 14 * 14  # no second pooling: the 14 x 14 map is flattened
    logits = model(torch.randn(3, 1, 28, 28))
    assert logits.shape == (3, 1)
    probability = torch.sigmoid(logits)
    assert torch.all((probability > 0) & (probability < 1))


def test_the_project_network_differs_where_the_issue_says():
    """The book's SmallCNN pools after both convolutions and has two outputs: the reason PaperCNN exists."""
    small = SmallCNN(1, 2, width=8)
    assert sum(isinstance(m, nn.MaxPool2d) for m in small.modules()) == 2
    assert small.classifier[-1].out_features == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in PaperCNN(1, 2, width=8).modules()) == 1


def test_make_expert_builds_it_for_binary_tasks_only():
    config = deep.DeepConfig(architecture="paper-cnn", width=4)
    model = make_expert(config, (1, 8, 8), 2)
    assert isinstance(model, PaperCNN) and deep.model_outputs(model) == 1
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 1)
    with pytest.raises(ValueError, match="binary tasks .* 6 classes"):
        make_expert(config, (1, 8, 8), 6)
    with pytest.raises(ValueError, match="architecture='paper-CNN' is not one of"):
        deep.DeepConfig(architecture="paper-CNN")


# --------------------------------------------------------------------------- the loss and the scoring


def test_sigmoid_loss_is_binary_cross_entropy_of_the_sigmoid():
    z = torch.tensor([[-30.0], [-1.5], [0.0], [0.7], [25.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1])
    p = torch.sigmoid(z[:, 0])
    by_hand = -(y * torch.log(p) + (1 - y) * torch.log1p(-p))
    torch.testing.assert_close(training.sigmoid_loss(z, y, reduction="none"), by_hand)
    torch.testing.assert_close(training.sigmoid_loss(z, y), by_hand.mean())


def test_two_class_logits_score_the_sigmoid_at_one_half():
    """softmax(0, z) = (1 - sigmoid z, sigmoid z): cross-entropy = binary cross-entropy, argmax = threshold 1/2."""
    z = torch.linspace(-4, 4, 41, dtype=torch.float64)[:, None]
    y = (torch.arange(41) % 3 == 0).long()
    two = training.two_class_logits(z)
    assert two.shape == (41, 2)
    torch.testing.assert_close(F.softmax(two, dim=1)[:, 1], torch.sigmoid(z[:, 0]))
    torch.testing.assert_close(F.cross_entropy(two, y), training.sigmoid_loss(z, y))
    assert torch.equal(two.argmax(dim=1), (torch.sigmoid(z[:, 0]) > 0.5).long())
    wide = torch.randn(5, 3)
    assert training.two_class_logits(wide) is wide  # two or more outputs: untouched
    stacked = training.two_class_logits(torch.randn(2, 5, 1))  # (R, n, 1) of the stacked evaluation
    assert stacked.shape == (2, 5, 2) and torch.all(stacked[..., 0] == 0)


def test_a_batch_of_one_class_trains_towards_its_own_label():
    """The 0/1 labels are the targets themselves: a batch of the digit alone (label 1) raises its
    probability. (Renumbering the present labels, as the masked multi-class loss does, would make it 0.)"""
    task = _digits_stream()[0]
    positives = np.flatnonzero(task.train_labels == 1)[:20]
    images, labels = task.train_images[positives], task.train_labels[positives]
    torch.manual_seed(0)
    model = PaperCNN(1, 2, width=4, image_size=(8, 8))
    x = torch.as_tensor(np.array(images))
    before = torch.sigmoid(model(x)).mean().item()
    training.train(model, images, labels, _tiny(epochs=30, lr=1e-2), np.random.default_rng(0), torch.device("cpu"))
    after = torch.sigmoid(model.eval()(x)).mean().item()
    assert after > max(before, 0.9), (before, after)


def test_the_paper_network_learns_a_digit_task():
    """Trained on 200 images of "is this a 1?", the network's test accuracy is far above chance (1/2):
    with 40 test images the standard error of chance accuracy is 0.08, and 0.85 is over four of them above."""
    stream = _digits_stream(test=40)
    task = stream[0]
    config = _tiny(epochs=20, samples_per_round=200, batch_size=20, lr=5e-3)
    torch.manual_seed(1)
    model = make_expert(config, stream.image_shape, stream.num_outputs)
    rng = np.random.default_rng(1)
    picked = rng.choice(len(task.train_labels), size=200, replace=False)
    training.train(model, task.train_images[picked], task.train_labels[picked], config, rng, torch.device("cpu"))
    tests = [training.test_set(task, None, torch.device("cpu"))]
    (logits, _), = training.test_outputs(model, tests)
    accuracy = np.mean(np.argmax(logits, axis=1) == np.asarray(tests[0][1]))
    assert accuracy > 0.85, accuracy


def test_the_locality_signal_of_one_output_is_its_binary_cross_entropy():
    stream = _digits_stream()
    task = stream[1]
    torch.manual_seed(2)
    model = PaperCNN(1, 2, width=4, image_size=(8, 8))
    images, labels = task.train_images[:30], task.train_labels[:30]
    signals = training.locality_signals(model, images, labels, torch.device("cpu"))
    with torch.no_grad():
        expected = training.sigmoid_loss(model.eval()(torch.as_tensor(np.array(images))), torch.as_tensor(np.array(labels)))
    assert math.isclose(signals["loss"], float(expected), rel_tol=1e-6)
    assert signals["gradient"] > 0


@pytest.mark.parametrize("method,M", [("gate", 2), ("finetune", 1), ("seed", 2)])
def test_batched_replicates_match_single_runs_with_the_paper_network(method, M):
    """The stacked path (train_stacked, test_outputs_stacked) gives each seed's run alone, to float32 rounding."""
    stream = _digits_stream()
    config = _tiny(method=method, M=M)
    alone = [deep.run(config, stream, seed=s) for s in (0, 1)]
    together = deep.run(config, stream, seed=[0, 1])
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a.tasks, b.tasks)
        np.testing.assert_array_equal(a.experts, b.experts)
        np.testing.assert_allclose(a.test_loss, b.test_loss, rtol=1e-3, atol=1e-4)
        assert np.all((a.test_accuracy >= 0) & (a.test_accuracy <= 1))


# --------------------------------------------------------------------------- the routing summaries


def test_routing_switch_rate_scores_zero_for_settled_routing_and_one_for_alternation():
    tasks = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
    assert deep_paper.routing_switch_rate(tasks, np.zeros(9, dtype=int)) == 0.0  # one network
    assert deep_paper.routing_switch_rate(tasks, tasks) == 0.0  # each type its own expert, for ever
    alternating = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0])
    assert deep_paper.routing_switch_rate(tasks, alternating) == 1.0
    assert deep_paper.routing_switch_rate(tasks, alternating, start=6) == 1.0
    assert deep_paper.routing_switch_rate(tasks, np.array([0, 0, 0, 1, 1, 1, 1, 1, 1]), start=6) == 0.0
    assert math.isnan(deep_paper.routing_switch_rate(tasks[:3], tasks[:3]))  # no type seen twice
    with pytest.raises(ValueError, match="one length"):
        deep_paper.routing_switch_rate(tasks, tasks[:4])


def test_routing_switch_rate_of_task_blind_routing_is_one_minus_one_over_m():
    """Routing drawn uniformly over M = 4 experts, ignoring the type: rate 3/4 within 4 binomial standard errors."""
    rng = np.random.default_rng(0)
    tasks, experts = rng.integers(3, size=4000), rng.integers(4, size=4000)
    rate = deep_paper.routing_switch_rate(tasks, experts)
    assert abs(rate - 0.75) < 4 * math.sqrt(0.75 * 0.25 / 3997)


def test_expert_loads_are_the_records_loads():
    stream = _digits_stream()
    records = deep.run(_tiny(M=3, T=5), stream, seed=0)
    loads = deep_paper.expert_loads(records.experts, 3)
    np.testing.assert_allclose(loads, records.load())
    np.testing.assert_allclose(loads.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="values in"):
        deep_paper.expert_loads(np.array([0, 3]), 3)


# --------------------------------------------------------------------------- the experiment


def test_deep_paper_ci_runs_the_papers_design(tmp_path, monkeypatch):
    monkeypatch.delenv("MOECL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no MNIST: scikit-learn's digits
    header, arrays = run_experiment("deep-paper", scale="ci", seed=3)
    assert header["labels"] == list(deep_paper.PAPER_METHODS)
    assert header["seeds"] == [3, 4] and header["rounds"] == deep_paper.PAPER_SCALES["ci"].rounds
    for label, spec in deep_paper.PAPER_METHODS.items():
        config = header["configs"][label]
        assert (config["architecture"], config["method"], config["M"]) == ("paper-cnn", spec[0], spec[1])
        assert config["termination"] == (spec[2] if len(spec) > 2 else "gap")
        assert config["task_order"] == "random"
        assert arrays[f"{label}/task/average_accuracy"].shape == (2,)
        assert arrays[f"{label}/experts"].max() < spec[1]
    # the zero cases of the two routing summaries: one network never switches and does not specialise
    np.testing.assert_array_equal(arrays["finetune/routing_switches"], 0.0)
    np.testing.assert_array_equal(arrays["finetune/specialisation"], 0.0)
    assert "scikit-learn" in header["source"]


def test_deep_paper_refuses_what_it_sets_and_a_long_run_too_short():
    with pytest.raises(ValueError, match="deep-paper sets M itself"):
        run_experiment("deep-paper", scale="ci", overrides={"M": 4})
    with pytest.raises(ValueError, match="methods='gate-M8'"):
        run_experiment("deep-paper", scale="ci", overrides={"methods": "gate-M8"})
    with pytest.raises(ValueError, match=r"T=60 is too short .*\(T1 = 17 for M = 5\)"):
        run_experiment("deep-paper", scale="long", overrides={"T": 60})
    with pytest.raises(ValueError, match="unknown scale"):
        run_experiment("deep-paper", scale="huge")
    assert EXPERIMENTS["deep-paper"].preset("paper").rounds == 60  # the paper's T


def test_the_long_preset_gives_the_gate_five_explorations():
    config = deep.DeepConfig(M=5)
    assert deep_paper.PAPER_SCALES["long"].rounds >= 5 * config.T1


# --------------------------------------------------------------------------- the verdicts of book/deep_paper.md


def _stored_like(rng, R=10, shift=None):
    """Arrays shaped as a stored deep-paper run, every summary noise around 0 unless ``shift`` moves it."""
    arrays = {}
    for label in deep_paper.PAPER_METHODS:
        for key in ("routing_switches", "task/forgetting", "task/generalization", "task/average_accuracy"):
            arrays[f"{label}/{key}"] = rng.normal(0, 1, R) + (shift or {}).get((label, key), 0.0)
    return arrays


def test_paper_verdicts_read_each_claim_from_its_paired_interval():
    rng = np.random.default_rng(0)
    shift = {("gate-M3-no-termination", "routing_switches"): 10.0, ("gate-M5-no-termination", "routing_switches"): 10.0,
             ("finetune", "task/forgetting"): 10.0, ("finetune", "task/generalization"): 10.0,
             ("gate-M3", "task/average_accuracy"): 10.0, ("gate-M5", "task/average_accuracy"): 10.0}
    rows = deep_paper.paper_verdicts(_stored_like(rng, shift=shift))
    assert len(rows) == 2 * len(deep_paper.PAPER_CLAIMS) + len(deep_paper.MORE_EXPERTS_CLAIMS)
    assert all(row["holds"] for row in rows), [row for row in rows if not row["holds"]]
    more = [row for row in rows if row["claim"].startswith("more experts")]
    assert {(row["a"], row["b"], row["M"]) for row in more} == {("gate-M5", "gate-M3", 5)}
    assert all(row["sign"] == 0 for row in more)  # gate-M5 and gate-M3 differ by noise only: not settled


def test_paper_verdicts_say_so_when_a_claim_fails():
    rng = np.random.default_rng(1)
    shift = {("gate-M3", "task/forgetting"): 10.0,  # the mixture forgets more
             ("gate-M5", "task/average_accuracy"): 10.0}  # M = 5 settled more accurate than M = 3
    rows = {(row["claim"], row["M"]): row for row in deep_paper.paper_verdicts(_stored_like(rng, shift=shift))}
    forgets = rows["the mixture forgets less than one network (F_T)", 3]
    assert forgets["sign"] == -1 and not forgets["holds"]
    assert not rows["more experts need not help (A_T)", 5]["holds"]
    assert rows["termination stabilises the loads", 3]["sign"] == 0  # no shift: not settled, so not shown to hold
    assert not rows["termination stabilises the loads", 3]["holds"]


def test_detectable_difference_is_the_t_test_at_eighty_percent_power():
    """Simulated paired t-tests at n = 10: an effect of the stated size is detected about 80% of the time."""
    from scipy import stats

    sd, n = 1.0, 10
    effect = (stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n)
    differences = np.random.default_rng(2).normal(0, sd, n)
    assert math.isclose(deep_paper.detectable_difference(differences),
                        effect * differences.std(ddof=1) / sd, rel_tol=1e-12)
    samples = np.random.default_rng(3).normal(effect, sd, (4000, n))
    t = samples.mean(axis=1) / (samples.std(axis=1, ddof=1) / math.sqrt(n))
    power = np.mean(t > stats.t.ppf(0.975, n - 1))
    assert abs(power - 0.8) < 4 * math.sqrt(0.8 * 0.2 / 4000) + 0.02  # the approximation is within 2 points
    with pytest.raises(ValueError, match="at least 2 seeds"):
        deep_paper.detectable_difference([0.3])


def test_stored_runs_of_one_scale_are_joined_along_the_seeds(tmp_path, monkeypatch):
    from moecl.results import save_results

    monkeypatch.delenv("MOECL_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    overrides = {"methods": "finetune,gate-M3", "T": 3}
    first = run_experiment("deep-paper", scale="ci", seed=0, overrides=overrides)
    second = run_experiment("deep-paper", scale="ci", seed=2, overrides=overrides)
    assert deep_paper.load_paper_runs("ci", tmp_path) is None
    save_results(tmp_path / "deep-paper-ci-seed2.npz", *second)
    save_results(tmp_path / "deep-paper-ci-seed0.npz", *first)
    save_results(tmp_path / "deep-paper-ci-seed0-T=9.npz", *first)  # another design's name: not read
    headers, arrays = deep_paper.load_paper_runs("ci", tmp_path)
    assert [h["seeds"] for h in headers] == [[0, 1], [2, 3]]
    np.testing.assert_array_equal(arrays["gate-M3/experts"],
                                  np.concatenate([first[1]["gate-M3/experts"], second[1]["gate-M3/experts"]]))
    save_results(tmp_path / "deep-paper-ci-seed1.npz", *second)  # seeds 2 and 3 again
    with pytest.raises(ValueError, match="seeds \\[2, 3\\] are stored twice"):
        deep_paper.load_paper_runs("ci", tmp_path)


def test_signed_rank_p_is_small_for_a_consistent_shift_and_one_for_none():
    assert deep_paper.signed_rank_p(np.zeros(6)) == 1.0
    assert deep_paper.signed_rank_p(np.arange(1, 11)) < 0.01  # ten positive differences: p = 2 / 2**10
    assert deep_paper.signed_rank_p([1.0, -1.0, 2.0, -2.0]) == 1.0
