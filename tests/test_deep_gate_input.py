"""The ``"gradient-histogram"`` gate input and the task-separation measurement (`moecl.deep.gate_inputs`)."""

import math

import numpy as np
import pytest

from moecl import deep
from moecl.deep import engine, gate_inputs
from small_runs import split_digits_stream


def _images(n, shape=(3, 16, 16), seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype(np.float32)


def _stripes(n, vertical, rng, size=16):
    """Grey stripe images, random frequency (1-3 periods) and phase: every pixel has mean 1/2 and one variance."""
    frequency = rng.integers(1, 4, size=n)[:, None]
    phase = rng.random(n)[:, None]
    wave = 0.5 + 0.4 * np.sin(2 * np.pi * (frequency * np.arange(size)[None, :] / size + phase))
    image = wave[:, None, :] if vertical else wave[:, :, None]  # (n, 1, size) or (n, size, 1)
    image = np.broadcast_to(image, (n, size, size))
    return np.repeat(image[:, None], 3, axis=1).astype(np.float32)


def test_shape_and_determinism_from_the_seed_sequence():
    images = _images(5)
    config = deep.DeepConfig(gate_input="gradient-histogram")
    phi = engine.gate_map(config, images.shape[1:], np.random.SeedSequence(3))
    features = phi(images)
    assert features.shape == (5, 128) and features.dtype == np.float64
    # every image's histogram has norm sqrt(128): no random part without gate_dim
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), math.sqrt(128))
    other = engine.gate_map(config, images.shape[1:], np.random.SeedSequence(4))
    np.testing.assert_array_equal(other(images), features)
    # with gate_dim, a fixed projection drawn from the seed sequence
    projected = config.replace(gate_dim=6)
    first = engine.gate_map(projected, images.shape[1:], np.random.SeedSequence(3))(images)
    again = engine.gate_map(projected, images.shape[1:], np.random.SeedSequence(3))(images)
    changed = engine.gate_map(projected, images.shape[1:], np.random.SeedSequence(4))(images)
    assert first.shape == (5, 6)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, changed)


def test_a_fixed_function_of_each_image():
    """No statistics of the data: an image's feature does not depend on the others in its batch
    or on anything seen before, and brightening or a contrast change leaves it unchanged."""
    images = _images(8, seed=1)
    phi = engine.gate_map(deep.DeepConfig(gate_input="gradient-histogram"), images.shape[1:],
                          np.random.SeedSequence(0))
    alone = np.concatenate([phi(images[i:i + 1]) for i in range(8)])
    _ = phi(_images(50, seed=2))  # other data in between changes nothing
    np.testing.assert_allclose(phi(images), alone)
    np.testing.assert_allclose(phi(images[::-1]), alone[::-1])
    np.testing.assert_allclose(phi(0.5 * images + 0.2), alone, rtol=1e-5, atol=1e-6)  # float32 images
    np.testing.assert_array_equal(phi(np.full((2, 3, 16, 16), 0.3)), 0.0)  # no gradient: zeros


def test_by_definition_on_a_single_edge():
    """A vertical step edge: horizontal gradient only, orientation bin 0, in the cells the edge crosses."""
    image = np.zeros((1, 1, 8, 8))
    image[..., 4:] = 1.0  # columns 3 and 4 see the step (central differences)
    histogram = gate_inputs.gradient_histogram(image, orientations=4, cells=2).reshape(2, 2, 4)
    assert np.all(histogram[..., 1:] == 0)
    # columns 3 (left cells) and 4 (right cells) see gradient 1 in every row: 4 votes of 1 per cell
    np.testing.assert_allclose(histogram[..., 0], np.full((2, 2), math.sqrt(16) / 2))
    with pytest.raises(ValueError, match="smaller than"):
        gate_inputs.gradient_histogram(np.zeros((1, 1, 2, 2)), cells=4)
    with pytest.raises(ValueError, match=r"\(n, C, H, W\)"):
        gate_inputs.gradient_histogram(np.zeros((2, 8, 8)))


def test_separates_texture_that_the_old_inputs_cannot_see():
    """Two task types of equal brightness, colour and pixel variance, horizontal against
    vertical stripes (random frequency and phase). The mean image and colour statistics
    give the two types the same expected batch mean, so their Fisher ratio is sampling
    noise only: type means from halves of 200 images (squared distance from their
    midpoint d sigma^2 / 400) over batch means of 60 of those 200 (d sigma^2 / 60 times
    140 / 199), about 0.21; with two or more effective dimensions it exceeds five times
    that (about 1) with probability below e^-5. Random ReLU features see the stripes'
    covariance a little (a ratio about 1); the gradient histogram's type gap is a
    hundred times larger than any of the three, and a nearest-mean rule on held-out
    batch means (of images not used for the type means) gets every batch right."""
    rng = np.random.default_rng(0)
    tasks = [_stripes(400, vertical=False, rng=rng), _stripes(400, vertical=True, rng=rng)]
    shape = tasks[0].shape[1:]
    separation = {}
    for name in deep.GATE_INPUTS:
        phi = engine.gate_map(deep.DeepConfig(gate_input=name), shape, np.random.SeedSequence(1))
        separation[name] = gate_inputs.task_separation([phi(x) for x in tasks], batch_size=60, seed=2)
    for name in ("mean-image", "colour-stats"):
        assert separation[name]["fisher"] < 1, (name, separation[name])
    assert separation["gradient-histogram"]["nearest_mean"] == 1.0, separation["gradient-histogram"]
    assert separation["gradient-histogram"]["fisher"] > 100 * max(s["fisher"] for s in separation.values()
                                                                  if s is not separation["gradient-histogram"])


def test_task_separation_on_known_geometry():
    """Three types at the corners of a triangle: |cos| 1/2; along one axis: 1; whitening undoes a stretch."""
    rng = np.random.default_rng(0)
    corners = np.array([[1.0, 0.0], [-0.5, math.sqrt(3) / 2], [-0.5, -math.sqrt(3) / 2]])
    noise = 0.05
    triangle = [c + noise * rng.standard_normal((300, 2)) for c in corners]
    result = gate_inputs.task_separation(triangle, batch_size=50, seed=1)
    assert result["cos_max"] == pytest.approx(0.5, abs=0.05)
    assert result["leading_share"] == pytest.approx(0.5, abs=0.05)
    assert result["nearest_mean"] == 1.0
    # between: mean squared norm 1; within: a batch mean of 50 of a half of 150 images
    # spreads by 2 noise^2 / 50 times the finite-population factor (150 - 50) / (150 - 1)
    assert result["fisher"] == pytest.approx(1 / (2 * noise ** 2 / 50 * 100 / 149), rel=0.3)
    line = [np.array([k, 0.0]) + noise * rng.standard_normal((300, 2)) for k in (-1.0, 0.0, 1.0)]
    assert gate_inputs.task_separation(line, batch_size=50, seed=1)["cos_max"] > 0.99
    stretched = [f * np.array([20.0, 1.0]) for f in triangle]
    plain = gate_inputs.task_separation(stretched, batch_size=50, seed=1)
    whitened = gate_inputs.task_separation(stretched, batch_size=50, seed=1, whiten=1e-4)
    assert plain["cos_max"] > 0.95 and whitened["cos_max"] == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="batch_size"):
        gate_inputs.task_separation(triangle, batch_size=1000)
    with pytest.raises(ValueError, match="two or more"):
        gate_inputs.task_separation(triangle[:1])


def test_config_accepts_it():
    assert "gradient-histogram" in deep.GATE_INPUTS
    assert deep.DeepConfig().gate_input == "mean-image"


def test_stream_separation_runs_the_gate_map_on_each_type():
    stream = split_digits_stream()
    config = deep.DeepConfig(gate_input="gradient-histogram")
    result = gate_inputs.stream_separation(config, stream, seed=3, batch_size=10, batches=5)
    phi = engine.gate_map(config, stream.image_shape, np.random.SeedSequence(3))
    direct = gate_inputs.task_separation([phi(task.train_images) for task in stream], batch_size=10, batches=5,
                                         seed=3)
    assert result == direct  # pool larger than the types: every image
    assert set(result) == {"cos_max", "cos_median", "leading_share", "fisher", "nearest_mean"}
    pooled = gate_inputs.stream_separation(config, stream, seed=3, pool=20, batch_size=10, batches=5)
    assert pooled == gate_inputs.stream_separation(config, stream, seed=3, pool=20, batch_size=10, batches=5)
