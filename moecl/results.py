"""Results files: one self-describing ``.npz`` per experiment run.

A results file is a NumPy ``.npz`` archive holding

* ``__header__``: a 0-d string array with a JSON object describing the run: the
  experiment's name and description, the scale preset, the seed, the number of
  replicates, the full configuration of every simulated setting (`Config.as_dict`),
  the package and numpy versions, the wall time and the creation time (UTC, ISO 8601),
  and a one-line description of every array;
* the arrays themselves, named ``<label>/<quantity>/<statistic>``, e.g.
  ``M8/forgetting/mean``. Per-round quantities are stored as summaries over the
  replicates (`summarise`: mean, standard error and the 2.5/50/97.5 percentiles),
  never as the raw per-round state of every replicate, so files stay small.

`save_results` writes atomically (temporary file in the same directory, fsync,
``os.replace``): a run that fails midway leaves no file behind and never damages an
older results file at the same path. `load_results` reads one back and raises
`ResultsFileError` (a `ValueError`) naming the path when the file is not a valid
results file.

Loading a results file needs nothing but numpy and json::

    with np.load(path) as archive:
        header = json.loads(str(archive["__header__"]))
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
import warnings
import zipfile
import zlib

import numpy as np

from .metrics import mean_se

#: Name of the header entry inside the archive.
HEADER_KEY = "__header__"
#: Value of the header's ``format`` field.
FORMAT = "moecl-results/1"
#: Percentiles over replicates stored by `summarise`.
PERCENTILES = (2.5, 50.0, 97.5)
#: Statistics stored by `summarise`, in order.
STATISTICS = ("mean", "se") + tuple(f"p{p:g}" for p in PERCENTILES)


class ResultsFileError(ValueError):
    """A file that is not a readable moecl results file."""


def summarise(values, prefix: str | None = None) -> dict[str, np.ndarray]:
    """Summaries over the replicate axis (axis 0) of ``values`` (R, ...).

    Returns the mean, its standard error and the 2.5/50/97.5 percentiles, each of
    shape ``values.shape[1:]``, under the keys of `STATISTICS` (``mean``, ``se``,
    ``p2.5``, ``p50``, ``p97.5``), prefixed by ``prefix + "/"`` when a prefix is given.
    NaN entries (e.g. the undefined F_1) are ignored; a point with no finite value
    gives NaN. Needs at least two replicates.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim < 1:
        raise ValueError("summarise needs an array with a leading replicate axis")
    mean, se = mean_se(values, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN points
        quantiles = np.nanpercentile(values, PERCENTILES, axis=0)
    stats = dict(zip(STATISTICS, (mean, se, *quantiles)))
    if prefix is None:
        return stats
    return {f"{prefix}/{name}": value for name, value in stats.items()}


def make_header(experiment: str, scale: str, seed: int, replicates: int, wall_time: float, **fields) -> dict:
    """The standard header of a results file, plus any further JSON-serialisable ``fields``.

    Adds the format tag, the package and numpy versions and the creation time (UTC).
    """
    from . import __version__

    header = {
        "format": FORMAT,
        "experiment": experiment,
        "scale": scale,
        "seed": int(seed),
        "replicates": int(replicates),
        "wall_time": float(wall_time),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "moecl_version": __version__,
        "numpy_version": np.__version__,
    }
    header.update(fields)
    return header


def save_results(path, header: dict, arrays: dict) -> str:
    """Write one results file atomically; returns the path written.

    ``header`` must be JSON-serialisable (numpy scalars and arrays are converted);
    ``arrays`` maps names to numeric or string arrays (object arrays are refused).
    The archive is written to a temporary file in the destination directory, flushed
    and fsync'ed, then moved over ``path`` with ``os.replace``. If anything fails
    (or the run is interrupted) the temporary file is removed and an older file at
    ``path``, if any, is left as it was.
    """
    path = os.fspath(path)
    if not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    for name in arrays:
        if not isinstance(name, str) or not name or name == HEADER_KEY or name.endswith(".npy"):
            raise ValueError(f"invalid array name {name!r} for results file {path}")
    header_text = json.dumps(header, default=_json_default, sort_keys=False)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary, handle = _open_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(handle, "wb") as stream:
            with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                _write_array(archive, HEADER_KEY, np.array(header_text))
                for name, value in arrays.items():
                    _write_array(archive, name, np.asarray(value))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
    return path


def load_results(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read a results file: returns ``(header, arrays)`` as given to `save_results`.

    Raises `FileNotFoundError` for a missing file and `ResultsFileError` for a file
    that is not a valid results file, both naming the path.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no results file at {path}")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ResultsFileError(f"{path} is not a moecl results file (not an .npz archive)")
        with archive:
            if HEADER_KEY not in archive.files:
                raise ResultsFileError(f"{path} is not a moecl results file (no {HEADER_KEY} entry)")
            header = json.loads(str(archive[HEADER_KEY]))
            arrays = {name: archive[name] for name in archive.files if name != HEADER_KEY}
    except ResultsFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error) as exc:
        raise ResultsFileError(f"{path} is not a readable moecl results file: {exc}") from exc
    if not isinstance(header, dict):
        raise ResultsFileError(f"{path} is not a moecl results file (its header is not a JSON object)")
    return header, arrays


def _write_array(archive: zipfile.ZipFile, name: str, value: np.ndarray) -> None:
    if value.dtype.hasobject:
        raise ValueError(f"array {name!r} has dtype object, which a results file does not store")
    with archive.open(name + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, value, allow_pickle=False)


def _open_temporary(directory: str, basename: str) -> tuple[str, int]:
    """Create a new hidden file next to the destination (mode 0666 less the umask)."""
    for _ in range(100):
        name = os.path.join(directory, f".{basename}.{secrets.token_hex(4)}.tmp")
        try:
            return name, os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory}")


def _fsync_directory(directory: str) -> None:
    """Make the rename durable where the platform allows it (best effort)."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"header value {value!r} of type {type(value).__name__} is not JSON-serialisable")
