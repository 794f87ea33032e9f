"""What a run may ask of the machine, checked before it starts, and what its numbers must be after.

* `estimate_bytes` estimates the memory one batch of `moecl.simulate` needs from its
  shape (replicates R, rounds T, experts M, dimension d, ...); `check_memory` refuses,
  in one line with the estimate, a run that does not fit in the memory available
  (`available_bytes`), instead of a ``MemoryError`` traceback after the fact.
* `check_finite` refuses results whose curves came out NaN or infinite, naming the
  scales that made them so; `singular_error` turns a singular task matrix
  (``numpy.linalg.LinAlgError``) into a one-line error naming the feature scales.

All errors are `RunLimitError`, a ``ValueError``, so the command line reports them in
one line with exit status 2 (the arguments asked for something that cannot run).
"""

from __future__ import annotations

import os

import numpy as np

from .errors import RunLimitError
from .records import record_bytes_per_round

#: Environment variable that caps the memory a run may use, in bytes (default: what the
#: machine has available).
MEMORY_ENV = "MOECL_MEMORY_LIMIT"

#: Fields whose scale can make the arithmetic overflow or a task matrix singular.
SCALE_FIELDS = ("sigma0", "beta", "sigma_t", "v_norm", "anisotropy", "eta", "alpha", "lambda_", "Gamma",
                "cluster_spread")
#: The scales that build the task data X_t (Definition 1): a singular Gram matrix X^T X comes from them.
FEATURE_FIELDS = ("beta", "v_norm", "sigma_t", "anisotropy", "d", "s")

#: Rounds prepared ahead per block, twice (the next block is prepared while one runs).
_BLOCK_ROUNDS = 2 * 32
#: Headroom for what is computed from the records after a run (summaries, load curves).
_HEADROOM = 1.5


def estimate_bytes(config, replicates: int, configs: int = 1) -> int:
    """Bytes one engine call of ``configs`` settings of ``config``'s shape with R replicates needs.

    Per-round records (R T `moecl.records.record_bytes_per_round` bytes, from the one
    declaration of the records, `moecl.records.RECORDS`), the state (experts, gate, errors
    and counts, R (2 M d + 3 M N) floats), a block of prepared rounds (samples, Gram
    factors, gate inputs, routing noise), and a headroom of 1.5 for the summaries
    computed from the records.
    """
    R = int(replicates) * int(configs)
    T, M, N, d, s = config.T, config.M, config.pool_size, config.d, config.s
    records = R * T * record_bytes_per_round(config)
    state = R * 8 * (2 * M * d + 3 * M * N + 2 * M)
    block = R * min(T, _BLOCK_ROUNDS) * 8 * (2 * s * d + d + s * s + M + 2)
    pool = 8 * 2 * N * d * int(configs)
    return int(_HEADROOM * (records + state + block + pool))


def available_bytes() -> int:
    """Memory a run may use: `MEMORY_ENV` if set, else the machine's available memory."""
    limit = os.environ.get(MEMORY_ENV)
    if limit:
        try:
            return int(float(limit))
        except ValueError:
            raise RunLimitError(f"{MEMORY_ENV}={limit!r} must be a number of bytes") from None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not a POSIX system
        return 2**62


def check_memory(config, replicates: int, configs: int = 1, available: int | None = None) -> int:
    """Refuse (`RunLimitError`, one line with the estimate) a run that does not fit; returns the estimate."""
    needed = estimate_bytes(config, replicates, configs)
    available = available_bytes() if available is None else int(available)
    if needed > available:
        shape = f"R={int(replicates) * int(configs)} replicates x T={config.T} rounds, M={config.M}, d={config.d}"
        raise RunLimitError(
            f"this run needs about {readable_bytes(needed)} of memory ({shape}), more than the {readable_bytes(available)} "
            f"available; use fewer replicates (--replicates) or rounds")
    return needed


def readable_bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def _named_scales(configs, fields) -> str:
    """``field=value`` of the scales that differ from the package defaults (all of ``fields`` if none do)."""
    from .config import Config

    default = Config(T=2)
    names = []
    for config in configs:
        for field in fields:
            value = getattr(config, field)
            if field not in ("d", "s") and value != getattr(default.replace(sigma0=config.sigma0, M=config.M,
                                                                               d=config.d), field):
                names.append(f"{field}={value:g}" if isinstance(value, float) else f"{field}={value}")
    if not names:
        names = [f"{field}={getattr(configs[0], field)}" for field in fields]
    return ", ".join(dict.fromkeys(names))


def check_finite(configs, results) -> None:
    """Refuse results whose G_t, F_t (from t = 2) or gate values are not all finite, naming the scales."""
    for config, result in zip(configs, results):
        curves = {"G_t": result.generalization, "F_t": result.forgetting[:, 1:], "gate values": result.gate_values}
        bad = [name for name, values in curves.items() if not np.all(np.isfinite(values))]
        if bad:
            raise RunLimitError(
                f"the simulation gave non-finite {', '.join(bad)} (float64 overflow): the scales "
                f"{_named_scales([config], SCALE_FIELDS)} are too large or too far apart; choose smaller ones")


def singular_error(configs) -> RunLimitError:
    """The error for a task matrix X^T X that is singular in float64, naming the feature scales."""
    return RunLimitError(
        "the task matrices X^T X are singular in float64: the feature scales "
        f"{_named_scales(configs, FEATURE_FIELDS)} are too far apart (the signal column beta v_n and the "
        "noise columns sigma_t must be within a few orders of magnitude)")
