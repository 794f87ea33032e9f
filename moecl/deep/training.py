"""Training and evaluation of the selected experts: one network, or stacked over replicates with ``torch.vmap``."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .config import DeepConfig
from .networks import SmallCNN, model_outputs


def test_set(task, limit, device):
    images, labels = task.test_images, task.test_labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return torch.as_tensor(np.array(images), device=device), torch.as_tensor(np.array(labels), device=device)


def autocast(device):
    """Training's precision: bf16 autocast on CUDA, full precision on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def full_precision(device):
    """Evaluation's precision: autocast off, so that the test logits, SEED's features (its
    Gaussians, KL selection and ensemble) and the locality signal are float32 even when
    training runs in bf16."""
    return torch.autocast(device.type, enabled=False)


def _wide(tensor):
    """A tensor in at least float32 (bf16 activations under autocast)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def sigmoid_loss(logits, labels, reduction: str = "mean"):
    """Binary cross-entropy of a one-output network (`moecl.deep.networks.PaperCNN`, the paper's sigmoid output).

    ``-[y log p + (1 - y) log(1 - p)]`` with ``p = sigmoid(z)``, from the logits ``z`` (..., 1) and the
    0/1 labels ``y`` (...), computed from ``z`` (``binary_cross_entropy_with_logits``, stable for large |z|).
    """
    return nn.functional.binary_cross_entropy_with_logits(logits[..., 0], labels.to(logits.dtype), reduction=reduction)


def two_class_logits(logits):
    """A one-output network's logits (..., 1) as two-class logits (..., 2) ``(0, z)``; others unchanged.

    ``softmax(0, z) = (1 - sigmoid(z), sigmoid(z))``: the cross-entropy of these logits is the binary
    cross-entropy of the sigmoid output, and their argmax is the sigmoid thresholded at 1/2 (``z > 0``;
    ``z = 0`` scores the rest), so the evaluation shared by every network scores the paper's one.
    """
    if logits.shape[-1] != 1:
        return logits
    return torch.cat([torch.zeros_like(logits), logits], dim=-1)


def locality_signals(model, images, labels, device, which=("gradient", "loss")) -> dict:
    """Candidate deep analogues of the locality loss's ``||w_t - w_{t-1}||``, before ``model`` trains.

    On the task's batch, with the masked cross-entropy of `train` and the model in eval
    mode (BatchNorm statistics untouched): ``"loss"``, the loss; ``"gradient"``, the norm
    of its gradient over all parameters (what one gradient step of unit size would
    change). Both are near 0 for an expert that already fits the task, as the linear
    model's minimum-norm change is. Full precision; nothing in the model changes.
    """
    present = np.unique(labels)
    x = torch.as_tensor(np.array(images), device=device)
    y = torch.as_tensor(np.searchsorted(present, np.array(labels)), device=device)
    was_training = model.training
    model.eval()
    try:
        with full_precision(device):
            if model_outputs(model) == 1:  # the paper's sigmoid output: binary cross-entropy on the 0/1 labels
                loss = sigmoid_loss(model(x), torch.as_tensor(np.array(labels), device=device))
            else:
                logits = model(x)[:, torch.as_tensor(present, device=device)]
                loss = nn.functional.cross_entropy(logits, y)
        result = {"loss": float(loss.detach())}
        if "gradient" in which:
            grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
            result["gradient"] = float(torch.sqrt(sum(torch.sum(g.double() ** 2) for g in grads)))
    finally:
        model.train(was_training)
    return result


def train(models, images, labels, config: DeepConfig, rngs, device, distill=None) -> None:
    """Train each replicate's selected expert on its task's samples (the deep analogue of Eq. (5)).

    ``models``, ``images``, ``labels``, ``rngs``: one entry per replicate. Each expert
    trains by Adam (a fresh optimiser, learning rate ``config.lr``) for ``epochs``
    passes in its own seeded batch order, on the cross-entropy over the outputs of the
    classes present in its training set (**book choice**, the usual masked loss of
    class-incremental fine-tuning: a new task's classes are learned without pushing
    down the logits of classes it does not contain; with every output present, as in
    the one-vs-rest tasks, it is the plain loss). A network with one output (the paper's sigmoid,
    ``architecture="paper-cnn"``) trains on the binary cross-entropy of its 0/1 labels (`sigmoid_loss`).

    ``distill`` (one weight per replicate; ``None``: all 0): SEED's feature distillation,
    the loss plus ``weight`` times the mean squared difference between the expert's
    penultimate features and those of its version before this round, on the same batch
    (a frozen copy; Rypesc et al. 2024).

    Replicates whose training sets have the same size train together, stacked
    (`train_stacked`); a replicate alone trains by the plain loop (`train_one`).
    One network (not in a list) with its images, labels and generator is one replicate.
    """
    if isinstance(models, nn.Module):
        models, images, labels, rngs = [models], [images], [labels], [rngs]
        distill = None if distill is None else [distill]
    distill = [0.0] * len(models) if distill is None else [float(w) for w in distill]
    groups: dict[int, list[int]] = {}
    for r, y in enumerate(labels):
        groups.setdefault(len(y), []).append(r)
    for members in groups.values():
        if len(members) == 1:
            r = members[0]
            train_one(models[r], images[r], labels[r], config, rngs[r], device, distill[r])
        else:
            train_stacked([models[r] for r in members], [images[r] for r in members],
                          [labels[r] for r in members], config, [rngs[r] for r in members], device,
                          [distill[r] for r in members])


def train_one(model, images, labels, config: DeepConfig, rng, device, distill: float = 0.0) -> None:
    """One expert, Adam, ``epochs`` passes, seeded batch order, masked cross-entropy (`train`)."""
    present = np.unique(labels)
    x = torch.as_tensor(np.array(images), device=device)
    y = torch.as_tensor(np.searchsorted(present, np.array(labels)), device=device)
    columns = torch.as_tensor(present, device=device)
    full = len(present) == model_outputs(model) and np.array_equal(present, np.arange(len(present)))
    sigmoid = model_outputs(model) == 1  # the paper's network: binary cross-entropy on the 0/1 labels
    if sigmoid:
        y = torch.as_tensor(np.array(labels), device=device)
    previous = None
    if distill > 0:  # the expert as it was before this round, frozen
        previous = copy.deepcopy(model).eval()
        for parameter in previous.parameters():
            parameter.requires_grad_(False)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    finite = torch.ones((), dtype=torch.bool, device=device)
    for _ in range(config.epochs):
        order = torch.as_tensor(rng.permutation(len(y)), device=device)
        for start in range(0, len(y), config.batch_size):
            batch = order[start:start + config.batch_size]
            optimiser.zero_grad(set_to_none=True)
            with autocast(device):
                logits, z = model(x[batch], features=True)
                loss = (sigmoid_loss(logits, y[batch]) if sigmoid else
                        nn.functional.cross_entropy(logits if full else logits[:, columns], y[batch]))
                if previous is not None:
                    with torch.no_grad():
                        z_old = previous.embed(x[batch])
                    loss = loss + distill * nn.functional.mse_loss(_wide(z), _wide(z_old))
            finite &= torch.isfinite(loss.detach())  # on the device: no synchronisation per step
            loss.backward()
            optimiser.step()
    _check_finite(finite, config)


class NonFiniteLossError(ValueError):
    """An expert's training loss became NaN or infinite (the message names the round and the settings)."""


def _check_finite(finite: torch.Tensor, config: DeepConfig) -> None:
    """Stop the run, in one line naming the training settings, if a loss was not finite.

    One check per round's training (a single device synchronisation). The round loop of
    `moecl.deep.engine.run_replicates` catches the error and names the round.
    """
    if bool(finite):
        return
    raise NonFiniteLossError(
        f"the training loss became non-finite (lr={config.lr:g}, epochs={config.epochs}, "
        f"batch_size={config.batch_size}, architecture={config.architecture}, width={config.width}, "
        f"method={config.method}): the run is stopped; choose a smaller lr")


_TEMPLATES: dict = {}


def stacking_template(model: nn.Module) -> nn.Module:
    """A parameterless copy of an expert (on the meta device) for `torch.func.functional_call`.

    Built once per architecture and shape and kept: a round does not copy the module.
    """
    key = (type(model).__name__, tuple((name, tuple(value.shape), value.dtype)
                                       for name, value in model.state_dict().items()))
    if key not in _TEMPLATES:
        _TEMPLATES[key] = copy.deepcopy(model).to("meta")
    return _TEMPLATES[key]


def train_stacked(models, images, labels, config: DeepConfig, rngs, device, distill=None) -> None:
    """R experts (one per replicate, training sets of one size) trained at once, as R `_train_one`.

    Their parameters and buffers are stacked along a new leading axis
    (`torch.func.stack_module_state`); ``torch.vmap`` of `torch.func.functional_call`
    computes the R experts' logits on their own replicates' batches, (R, B, K). The
    masked cross-entropy of replicate r sets the logits of the classes absent from its
    training set to -inf (the same log-softmax as keeping only the present columns), and
    one Adam steps on the sum of the R mean losses: replicate r's slice of the stacked
    tensors gets exactly its own loss's gradient, and Adam is elementwise, so the slices
    follow R independent Adams. BatchNorm (ResNet-18) trains with its stacked running
    statistics, updated in place per replicate under vmap. SEED's feature distillation
    (``distill``, one weight per replicate) compares with a frozen copy of the stacked
    tensors taken before training, run in eval mode. The trained slices are written back
    into the experts.
    """
    R = len(models)
    K = model_outputs(models[0])
    mask = torch.zeros((R, K), dtype=torch.bool)
    for r, y in enumerate(labels):
        mask[r, np.unique(y) if K > 1 else 0] = True  # one output (the paper's sigmoid): no masking
    mask = mask.to(device)[:, None, :]
    x = torch.as_tensor(np.stack([np.asarray(im) for im in images]), device=device)  # (R, n, C, H, W)
    y = torch.as_tensor(np.stack([np.asarray(lab) for lab in labels]), device=device)  # (R, n): output columns
    for model in models:
        model.train()
    parameters, buffers = torch.func.stack_module_state(models)
    template = stacking_template(models[0]).train()
    weights = torch.as_tensor([0.0] * R if distill is None else list(distill), device=device)
    previous = None
    if bool(torch.any(weights > 0)):
        previous = ({k: v.detach().clone() for k, v in parameters.items()},
                    {k: v.detach().clone() for k, v in buffers.items()})

    def outputs_of(p, b, images_batch):
        return torch.func.functional_call(template, (p, b), (images_batch,), {"features": True})

    batched_outputs = torch.vmap(outputs_of)
    optimiser = torch.optim.Adam(list(parameters.values()), lr=config.lr)
    rows = torch.arange(R, device=device)[:, None]
    size = y.shape[1]
    finite = torch.ones((), dtype=torch.bool, device=device)
    for _ in range(config.epochs):
        order = torch.as_tensor(np.stack([rng.permutation(size) for rng in rngs]), device=device)
        for start in range(0, size, config.batch_size):
            batch = order[:, start:start + config.batch_size]
            optimiser.zero_grad(set_to_none=True)
            with autocast(device):
                logits, z = batched_outputs(parameters, buffers, x[rows, batch])
                if K == 1:
                    losses = sigmoid_loss(logits, y[rows, batch], reduction="none").mean(dim=1)
                else:
                    logits = logits.masked_fill(~mask, float("-inf"))
                    losses = nn.functional.cross_entropy(logits.flatten(0, 1), y[rows, batch].flatten(),
                                                         reduction="none")
                    losses = losses.view(R, -1).mean(dim=1)
                if previous is not None:
                    with torch.no_grad():
                        template.eval()
                        _, z_old = batched_outputs(*previous, x[rows, batch])
                        template.train()
                    losses = losses + weights * ((_wide(z) - _wide(z_old)) ** 2).flatten(1).mean(dim=1)
                loss = losses.sum()
            finite &= torch.isfinite(loss.detach())  # on the device: no synchronisation per step
            loss.backward()
            optimiser.step()
    _check_finite(finite, config)
    with torch.no_grad():
        for r, model in enumerate(models):
            for name, value in model.named_parameters():
                value.copy_(parameters[name][r])
            for name, value in model.named_buffers():
                value.copy_(buffers[name][r])


@torch.no_grad()
def features(model, x) -> np.ndarray:
    """Penultimate features of images x, float64 (n, D)."""
    model.eval()
    with full_precision(x.device):
        return np.asarray(model.embed(x).float().cpu(), dtype=np.float64)


@torch.no_grad()
def test_outputs(model, tests) -> list[tuple[np.ndarray, np.ndarray]]:
    """(logits, penultimate features) of one expert on every task type's test set, float64."""
    model.eval()
    result = []
    for x, _ in tests:
        with full_precision(x.device):
            z = model.embed(x)
            logits = two_class_logits((model.classifier[-1] if isinstance(model, SmallCNN) else model.head[-1])(z))
        result.append((np.asarray(logits.float().cpu(), dtype=np.float64),
                       np.asarray(z.float().cpu(), dtype=np.float64)))
    return result


@torch.no_grad()
def test_outputs_stacked(models, tests) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """`_outputs` of R experts at once (stacked parameters, ``torch.vmap`` over the experts).

    Returns one list per expert, as `_outputs` would.
    """
    for model in models:
        model.eval()
    parameters, buffers = torch.func.stack_module_state(models)
    template = stacking_template(models[0]).eval()

    def outputs_of(p, b, x):
        return torch.func.functional_call(template, (p, b), (x,), {"features": True})

    batched = torch.vmap(outputs_of, in_dims=(0, 0, None))
    result = [[] for _ in models]
    for x, _ in tests:
        with full_precision(x.device):
            logits, z = batched(parameters, buffers, x)
        logits = np.asarray(two_class_logits(logits).float().cpu(), dtype=np.float64)
        z = np.asarray(z.float().cpu(), dtype=np.float64)
        for r in range(len(models)):
            result[r].append((logits[r], z[r]))
    return result
