"""What a deep run may ask of the machine, checked before it starts (as `moecl.limits` does for linear runs).

`estimate_bytes` estimates the memory of one `moecl.deep.run_replicates` call from its
shape: the experts' parameters (counted on torch's ``meta`` device, so nothing is
allocated) times experts times seeds, Adam's state and the training activations of a
batch, the test sets and the experts' cached outputs on them, each round's training
set, and the per-round records. `check_run` refuses, in one line with the estimate, a
run that does not fit in the memory available (`moecl.limits.available_bytes`;
``MOECL_MEMORY_LIMIT`` caps it), or on a GPU in the device's free memory, and a run of
more than `MAX_SEEDS` seeds, before any work is done. Errors are
`moecl.limits.RunLimitError` (a ``ValueError``): the command line reports them in one
line with exit status 2.
"""

from __future__ import annotations

import math

import torch

from ..limits import RunLimitError, available_bytes, readable_bytes
from .methods import METHOD_CLASSES

#: Most seeds one deep run (or one ``deep-methods`` run, `check_replicates`) may have.
MAX_SEEDS = 10_000
#: Headroom for what the estimate leaves out (allocator slack, temporary copies).
_HEADROOM = 1.5


def _network_shape(config, image_shape, num_outputs) -> tuple[int, int, int]:
    """(parameters, activation values per image, feature dimension) of one expert, on the meta device."""
    from .networks import make_expert

    with torch.device("meta"):
        model = make_expert(config, tuple(image_shape), int(num_outputs)).eval()
        activations = []

        def count(module, inputs, output):
            for value in output if isinstance(output, (tuple, list)) else (output,):
                if isinstance(value, torch.Tensor):
                    activations.append(value.numel())

        hooks = [module.register_forward_hook(count) for module in model.modules()
                 if not list(module.children())]
        try:
            with torch.no_grad():
                features = model.embed(torch.empty((1, *image_shape)))
        finally:
            for hook in hooks:
                hook.remove()
        parameters = sum(p.numel() for p in model.parameters())
    return int(parameters), int(sum(activations)), int(features.shape[1])


def estimate_bytes(config, stream, seeds: int) -> dict[str, int]:
    """Bytes a deep run of ``config`` on ``stream`` with ``seeds`` seeds needs: ``{"host": ..., "device": ...}``.

    Per seed: M experts of P float32 parameters; for the trained expert, its gradient,
    Adam's two moments, the stacked copy and two float64 parameter vectors, plus the
    activations of a training batch (A values per image, forward and backward); the
    experts' cached float64 logits and features on every test image; the round's
    training set (every sample seen so far for ``method="joint"``); the records
    (T rounds of M x N losses and accuracies and the rest). Shared: the test sets on the
    device and one type's test activations per seed at evaluation. Times 1.5 headroom.
    """
    R, M, T = int(seeds), config.M, config.T
    P, A, D = _network_shape(config, stream.image_shape, stream.num_outputs)
    image = math.prod(stream.image_shape)
    N = stream.N
    tests = [len(task.test_labels) if config.test_samples is None else min(config.test_samples, len(task.test_labels))
             for task in stream]
    trains = [len(task.train_labels) for task in stream]
    method = METHOD_CLASSES[config.method]
    per_round = sum(trains) if method.trains_on_everything_seen else min(config.samples_per_round, max(trains))
    batch = min(config.batch_size, per_round)
    weights = R * M * P * 4 * (2 if method.trains_on_everything_seen else 1)  # joint keeps the initial weights
    training = R * (P * (4 * 4 + 8 * 2) + batch * A * 4 * 3 + per_round * image * 4 * 2)
    evaluation = sum(tests) * image * 4 + R * max(tests) * A * 4
    outputs = R * M * sum(tests) * (stream.num_outputs + D) * 8
    records = R * T * 8 * (2 * M * N + M + 5 + 5 * N)
    gate_inputs = R * sum(tests) * max(config.gate_dim or 0, image) * 8 if method.keeps_gate_inputs else 0
    device = int(_HEADROOM * (weights + training + evaluation))
    host = int(_HEADROOM * (weights + training + evaluation + outputs + records + gate_inputs))
    return {"host": host, "device": device}


def check_replicates(count: int) -> int:
    """Refuse (`RunLimitError`, one line) more than `MAX_SEEDS` seeds; returns ``count``."""
    if count > MAX_SEEDS:
        raise RunLimitError(f"{count:,} seeds (replicates) asked for; a deep run takes at most {MAX_SEEDS:,}")
    return count


def check_run(config, stream, seeds, device=None, available: int | None = None) -> dict[str, int]:
    """Refuse a deep run that cannot fit (`RunLimitError`, one line with the estimate); returns the estimate.

    Host memory is compared with ``available`` (default `moecl.limits.available_bytes`);
    on a CUDA ``device`` the device's share also with its free memory.
    """
    R = check_replicates(len(seeds))
    needed = estimate_bytes(config, stream, R)
    shape = (f"{R} seed(s) x M={config.M} {config.architecture} experts of width {config.width}, "
             f"T={config.T} rounds, {stream.N} task types")
    available = available_bytes() if available is None else int(available)
    if needed["host"] > available:
        raise RunLimitError(f"this deep run needs about {readable_bytes(needed['host'])} of memory ({shape}), more than the "
                            f"{readable_bytes(available)} available; use fewer seeds, experts, rounds or a smaller width")
    if device is not None and torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        if needed["device"] > free:
            raise RunLimitError(f"this deep run needs about {readable_bytes(needed['device'])} of GPU memory ({shape}), more "
                                f"than the {readable_bytes(free)} free; use fewer seeds, experts or a smaller width")
    return needed
