"""Gate inputs of the deep MoE and how well they tell task types apart (book chapter: deep experts).

The deep gate is linear in the centred batch mean of a fixed per-image feature
(``DeepConfig.gate_input``, `gate_map`). Its gate values are
``theta^(m)T xbar`` with ``theta^(m)`` a sum of earlier ``xbar``'s (Eq. (9)), so what
the gate can learn is set by the Gram matrix of the task types' centred mean
features: when they lie along one axis the gate can only order the types along it.

* `gate_map`: the per-image feature of ``DeepConfig.gate_input`` whose centred batch mean
  the gate sees (`gate_feature`: the ``"mean-image"`` input with a fixed centre);
* `gradient_histogram`: a HOG-like per-image feature (orientation histograms of the
  grey image's gradient on a coarse grid), the ``"gradient-histogram"`` gate input;
* `task_separation`: the measurement of the chapter: from batches of each type's
  images, the largest and median ``|cos|`` between the centred mean features of the
  types, the share of their spread along the leading axis, a Fisher-type ratio
  (spread between the type means over the spread of batch means within a type),
  and the share of held-out batches a nearest-mean rule assigns to their own type.
  Optionally the batch features are whitened first by the covariance of all batch
  means (``whiten``), to show what a data-dependent rescaling of the gate input
  would change;
* `stream_separation`: `task_separation` of a task stream under a config's gate input.

On split CIFAR-10 every fixed input of ``DeepConfig.gate_input`` leaves the five tasks'
centred means near one axis (vehicles against animals); whitening by the covariance of
the batch means spreads them evenly.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .._checks import check_int, check_real

if TYPE_CHECKING:
    from .config import DeepConfig


def gate_feature(images: np.ndarray, centre: np.ndarray, projection: np.ndarray | None) -> np.ndarray:
    """The batch's mean flattened image minus ``centre``, times ``projection`` (gate_dim, C*H*W) if given.

    The ``"mean-image"`` gate input with a fixed centre (`gate_map` is the general form).
    """
    xbar = images.reshape(len(images), -1).mean(axis=0, dtype=np.float64) - centre
    return xbar if projection is None else projection @ xbar


#: Default dimensions of the gate inputs that need one (``DeepConfig.gate_dim=None``).
_DEFAULT_GATE_DIMS = {"colour-stats": 64, "random-features": 256}
#: Width of the ``"gradient-histogram"`` gate input: 8 orientations on a 4 x 4 grid.
_HISTOGRAM_DIM = 128


def gate_map(config: DeepConfig, image_shape, seed_sequence):
    """The per-image gate feature of ``config.gate_input``: a function (n, C, H, W) -> (n, d), float64.

    The gate sees the mean of it over the task's batch, centred (`moecl.deep.methods.GateMethod`).
    Everything random in it is fixed by ``seed_sequence`` (data-independent; nothing learned):

    * ``"mean-image"``: the flattened image; with ``gate_dim``, ``P x`` for a Gaussian
      ``P`` (gate_dim, D) scaled by ``1/sqrt(D)``;
    * ``"colour-stats"``: per-channel mean and standard deviation of the image, then ``P x``
      (gate_dim rows, default 64);
    * ``"random-features"``: ``relu(P (x - 1/2) + b)``, gate_dim (default 256) random
      ReLU features (``P`` as above times ``sqrt(2)``, ``b`` uniform in [-1/2, 1/2]):
      their batch mean is an embedding of the batch's distribution, not only of its
      mean image;
    * ``"gradient-histogram"``: HOG-like orientation histograms of the grey image's
      gradient, 8 orientations on a 4 x 4 grid, each image's scaled to norm ``sqrt(128)``
      (`gradient_histogram`: blind to brightness and contrast);
      with ``gate_dim``, ``P f`` for a Gaussian ``P`` (gate_dim, 128) scaled by
      ``1/sqrt(128)``. Book chapter deep experts measures how well each input separates
      the task types (`task_separation`).
    """
    dim = _HISTOGRAM_DIM if config.gate_input == "gradient-histogram" else int(np.prod(image_shape))
    rng = np.random.default_rng(seed_sequence)
    rows = config.gate_dim or _DEFAULT_GATE_DIMS.get(config.gate_input)
    projection = None if rows is None else rng.standard_normal((rows, dim)) / math.sqrt(dim)
    channels = image_shape[0]
    if config.gate_input == "mean-image":
        def phi(images):
            flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
            return flat if projection is None else flat @ projection.T
    elif config.gate_input == "colour-stats":
        def phi(images):
            flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
            per_channel = flat.reshape(len(images), channels, -1)
            return np.concatenate([per_channel.mean(axis=2), per_channel.std(axis=2), flat @ projection.T], axis=1)
    elif config.gate_input == "gradient-histogram":
        def phi(images):
            histogram = gradient_histogram(images)
            return histogram if projection is None else histogram @ projection.T
    else:
        projection = projection * math.sqrt(2.0)
        bias = rng.uniform(-0.5, 0.5, size=rows)

        def phi(images):
            flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
            return np.maximum((flat - 0.5) @ projection.T + bias, 0.0)
    return phi


def gradient_histogram(images: np.ndarray, orientations: int = 8, cells: int = 4) -> np.ndarray:
    """HOG-like features (n, cells * cells * orientations) of images (n, C, H, W), float64.

    The grey image (mean over channels) is differentiated by central differences; each
    pixel votes its gradient magnitude into one of ``orientations`` unsigned
    orientation bins of ``[0, pi)`` in its cell of a ``cells x cells`` grid (cell
    boundaries at ``floor(k H / cells)``). Each image's histogram is scaled to Euclidean
    norm ``sqrt(d)`` (root-mean-square entry 1): the feature does not change when an
    image is brightened (``x + c``) or its contrast scaled (``a x``, ``a > 0``), and
    its scale does not depend on d. An image without gradient gives zeros.
    """
    check_int("orientations", orientations, minimum=1)
    check_int("cells", cells, minimum=1)
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 4:
        raise ValueError(f"images of shape {images.shape} must be (n, C, H, W)")
    n, _, H, W = images.shape
    if H < cells or W < cells:
        raise ValueError(f"images of {H}x{W} pixels are smaller than a {cells}x{cells} grid")
    grey = images.mean(axis=1)
    gx = np.zeros_like(grey)
    gy = np.zeros_like(grey)
    gx[:, :, 1:-1] = grey[:, :, 2:] - grey[:, :, :-2]
    gy[:, 1:-1, :] = grey[:, 2:, :] - grey[:, :-2, :]
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.arctan2(gy, gx), np.pi)
    orientation = np.minimum((angle * (orientations / np.pi)).astype(np.int64), orientations - 1)
    row = (np.arange(H) * cells) // H
    col = (np.arange(W) * cells) // W
    bins = ((row[:, None] * cells + col[None, :]) * orientations)[None] + orientation  # (n, H, W)
    d = cells * cells * orientations
    flat = (bins + (np.arange(n) * d)[:, None, None]).ravel()
    histogram = np.bincount(flat, weights=magnitude.ravel(), minlength=n * d).reshape(n, d)
    norm = np.linalg.norm(histogram, axis=1, keepdims=True)
    return np.divide(histogram * math.sqrt(d), norm, out=np.zeros_like(histogram), where=norm > 0)


def _whitening(batch_means: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre and symmetric inverse square root of the covariance of batch means, ridge times its mean eigenvalue added."""
    centre = batch_means.mean(axis=0)
    covariance = np.atleast_2d(np.cov(batch_means, rowvar=False))
    d = covariance.shape[0]
    covariance = covariance + (ridge * np.trace(covariance) / d + 1e-12) * np.eye(d)
    values, vectors = np.linalg.eigh(covariance)
    return centre, (vectors * values ** -0.5) @ vectors.T


def task_separation(features, batch_size: int = 100, batches: int = 30, seed: int = 0,
                    whiten: float | None = None) -> dict:
    """How far apart the task types' batch means of per-image ``features`` lie.

    ``features``: one array (n_k, d) of per-image gate features per task type (N >= 2).
    Each type's images are split at random (seeded by ``seed``) into two halves: from
    the first, ``batches`` batch means of ``batch_size`` images (drawn without
    replacement) estimate the type means; from the second, as many held-out batch means
    are drawn (so that a finite pool's own mean cannot identify its batches). Batch
    means are centred by the mean of the estimating ones. With
    ``whiten`` (a ridge, e.g. 0.1) the batch means are first multiplied by the inverse
    square root of the covariance of the estimating batch means plus ``whiten`` times
    its mean eigenvalue (data of every type, no labels). Returns:

    * ``cos_max``, ``cos_median``: largest and median ``|cos|`` between centred type
      means (pairs of types); ``1 / (N - 1)`` for types at the corners of a regular
      simplex, 1 for types along one axis;
    * ``leading_share``: share of the type means' spread along their leading axis
      (``1 / (N - 1)`` to 1);
    * ``fisher``: mean squared distance of the type means from their mean over the mean
      squared distance of a batch mean from its type mean;
    * ``nearest_mean``: share of held-out batch means nearest to their own type's mean.
    """
    features = [np.asarray(f, dtype=np.float64) for f in features]
    if len(features) < 2 or any(f.ndim != 2 or f.shape[1] != features[0].shape[1] for f in features):
        raise ValueError("features must be two or more arrays (n_k, d) of one width d")
    check_int("batch_size", batch_size, minimum=1)
    check_int("batches", batches, minimum=2)
    if whiten is not None:
        check_real("whiten", whiten, low=0.0)
    if any(len(f) < 2 * batch_size for f in features):
        raise ValueError(f"every type needs at least 2 * batch_size = {2 * batch_size} images")
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for f in features:
        order = rng.permutation(len(f))
        halves = f[order[:len(f) // 2]], f[order[len(f) // 2:]]
        fit.append([halves[0][rng.choice(len(halves[0]), batch_size, replace=False)].mean(axis=0)
                    for _ in range(batches)])
        held.append([halves[1][rng.choice(len(halves[1]), batch_size, replace=False)].mean(axis=0)
                     for _ in range(batches)])
    fit, held = np.array(fit), np.array(held)  # (N, batches, d)
    if whiten is None:
        centre, transform = fit.reshape(-1, fit.shape[-1]).mean(axis=0), None
    else:
        centre, transform = _whitening(fit.reshape(-1, fit.shape[-1]), whiten)
    fit, held = fit - centre, held - centre
    if transform is not None:
        fit, held = fit @ transform, held @ transform
    type_means = fit.mean(axis=1)
    centred = type_means - type_means.mean(axis=0)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    unit = np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)
    pairs = np.abs(unit @ unit.T)[np.triu_indices(len(features), 1)]
    spread = np.linalg.svd(centred, compute_uv=False) ** 2
    within = np.mean(np.sum((fit - type_means[:, None]) ** 2, axis=2))
    distances = np.sum((held[:, :, None, :] - type_means[None, None]) ** 2, axis=3)
    return {
        "cos_max": float(pairs.max()), "cos_median": float(np.median(pairs)),
        "leading_share": float(spread[0] / spread.sum()) if spread.sum() > 0 else 1.0,
        "fisher": float(np.mean(np.sum(centred ** 2, axis=1)) / within) if within > 0 else math.inf,
        "nearest_mean": float(np.mean(distances.argmin(axis=2) == np.arange(len(features))[:, None])),
    }


def stream_separation(config, stream, seed: int = 0, pool: int | None = 2000, batch_size: int = 100,
                      batches: int = 30, whiten: float | None = None) -> dict:
    """`task_separation` of a task stream's types under ``config.gate_input`` (`gate_map`).

    The gate map's random parts and the draws are seeded by ``seed``; ``pool`` training
    images per type (``None``: all) are drawn before the features are computed.
    """
    phi = gate_map(config, stream.image_shape, np.random.SeedSequence(seed))
    rng = np.random.default_rng(seed)
    features = []
    for task in stream:
        images = task.train_images
        if pool is not None and len(images) > pool:
            images = images[np.sort(rng.choice(len(images), pool, replace=False))]
        features.append(phi(images))
    return task_separation(features, batch_size=batch_size, batches=batches, seed=seed, whiten=whiten)
