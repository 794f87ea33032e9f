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
``os.replace``): a run that fails midway, or is stopped by Ctrl-C, SIGTERM or SIGHUP,
leaves no file behind (not even its temporary file) and never damages an older results
file at the same path. `load_results` reads one back and validates it: the format tag
and version (a known older version is read, an unknown newer one refused), and the
schema (the header's fields, and every array the header's ``arrays`` field describes
present, with the shape it states); it raises `ResultsFileError` (a `ValueError`)
naming the path when the file is not a valid results file.

Loading a results file needs nothing but numpy and json::

    with np.load(path) as archive:
        header = json.loads(str(archive["__header__"]))
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import warnings
import zipfile
import zlib

import numpy as np

from .atomic import write_atomically
from .errors import ResultsFileError
from .metrics import mean_se

#: Name of the header entry inside the archive.
HEADER_KEY = "__header__"
#: Name of the format, the part of the header's ``format`` field before the slash.
FORMAT_NAME = "moecl-results"
#: Version of the format this package writes.
FORMAT_VERSION = 2
#: Versions `load_results` reads (older ones stay readable; a newer one is refused). Version 1 has
#: no ``shapes`` field; version 2 adds it.
READABLE_VERSIONS = (1, 2)
#: Value of the header's ``format`` field.
FORMAT = f"{FORMAT_NAME}/{FORMAT_VERSION}"
#: JSON types of the header fields `load_results` checks where present (``format`` is required).
FIELD_TYPES = {"format": str, "experiment": str, "scale": str, "seed": int, "replicates": int, "rounds": int,
               "labels": list, "configs": dict, "arrays": dict, "overrides": dict, "shapes": dict}
#: Header fields that identify a run: two files whose identities differ hold different runs
#: (`identity`; the command line will not write over such a file without ``--force``).
IDENTITY_FIELDS = ("format", "experiment", "scale", "seed", "replicates", "rounds", "labels", "configs",
                   "overrides", "stream", "source", "seeds")
#: Percentiles over replicates stored by `summarise`.
PERCENTILES = (2.5, 50.0, 97.5)
#: Statistics stored by `summarise`, in order.
STATISTICS = ("mean", "se") + tuple(f"p{p:g}" for p in PERCENTILES)


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
    ``arrays`` maps names to numeric or string arrays (object arrays are refused). The
    file's header also records the format tag `FORMAT` (when ``header`` has none) and
    the shape of every array (``shapes``), which `load_results` checks. The archive is
    written to a temporary file in the destination directory, flushed and fsync'ed,
    then moved over ``path`` with ``os.replace``. If anything fails (or the run is
    interrupted: Ctrl-C, SIGTERM, SIGHUP) the temporary file is removed and an older
    file at ``path``, if any, is left as it was; a termination signal is then delivered
    again, so the process ends as the signal asked.
    """
    path = os.fspath(path)
    if not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    for name in arrays:
        if not isinstance(name, str) or not name or name == HEADER_KEY or name.endswith(".npy"):
            raise ValueError(f"invalid array name {name!r} for results file {path}")
    arrays = {name: np.asarray(value) for name, value in arrays.items()}
    header = {"format": FORMAT, **header, "shapes": {name: list(value.shape) for name, value in arrays.items()}}
    header_text = json.dumps(header, default=_json_default, sort_keys=False)

    def write(stream):
        with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            _write_array(archive, HEADER_KEY, np.array(header_text))
            for name, value in arrays.items():
                _write_array(archive, name, value)

    return write_atomically(path, write)


def load_results(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and validate a results file: returns ``(header, arrays)`` as given to `save_results`.

    Raises `FileNotFoundError` for a missing file and `ResultsFileError` for a file
    that is not a valid results file, both naming the path: not an ``.npz`` archive, no
    header, a header whose fields have the wrong types (`FIELD_TYPES`), another format, a version
    newer than this package reads (`READABLE_VERSIONS`), or arrays that do not match
    the header (`check_schema`).
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
            if not isinstance(header, dict):
                raise ResultsFileError(f"{path} is not a moecl results file (its header is not a JSON object)")
            check_header(header, path)
            arrays = {name: archive[name] for name in archive.files if name != HEADER_KEY}
    except ResultsFileError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error) as exc:
        raise ResultsFileError(f"{path} is not a readable moecl results file: {exc}") from exc
    check_schema(header, arrays, path)
    return header, arrays


def format_version(header: dict, path="results file") -> int:
    """The version of the format tag ``moecl-results/<version>`` of a header; ResultsFileError otherwise."""
    tag = header.get("format")
    match = re.fullmatch(re.escape(FORMAT_NAME) + r"/(\d+)", tag) if isinstance(tag, str) else None
    if match is None:
        raise ResultsFileError(f"{path} is not a moecl results file (format {tag!r}, expected {FORMAT!r})")
    return int(match.group(1))


def check_header(header: dict, path="results file") -> None:
    """Check a header's format tag, version and required fields; ResultsFileError naming ``path``."""
    version = format_version(header, path)
    if version not in READABLE_VERSIONS:
        newer = version > max(READABLE_VERSIONS)
        raise ResultsFileError(
            f"{path} has results format version {version}, which this moecl cannot read "
            + ("(it is newer: update moecl)" if newer else f"(it reads versions {list(READABLE_VERSIONS)})"))
    for field, kind in FIELD_TYPES.items():
        if field in header and (not isinstance(header[field], kind) or isinstance(header[field], bool)):
            raise ResultsFileError(f"{path}: header field {field!r} is not a {kind.__name__} "
                                   f"(found {header[field]!r}); the file is damaged")


def check_schema(header: dict, arrays: dict, path="results file") -> None:
    """Check that the arrays match the header; ResultsFileError naming ``path`` and the array.

    Every array the header's ``shapes`` lists is present with that shape and no other
    is; every array its ``arrays`` field describes (``name`` or ``prefix/{a,b,...}``;
    templates with ``<...>`` are skipped) is present; every label has a configuration.
    """
    shapes = header.get("shapes")
    if shapes is not None:
        if not isinstance(shapes, dict):
            raise ResultsFileError(f"{path}: header field 'shapes' is not an object; the file is damaged")
        for name, shape in shapes.items():
            if name not in arrays:
                raise ResultsFileError(f"{path}: array {name!r} listed in the header is missing; the file is damaged")
            if list(arrays[name].shape) != list(shape):
                raise ResultsFileError(f"{path}: array {name!r} has shape {tuple(arrays[name].shape)}, "
                                       f"the header says {tuple(shape)}; the file is damaged")
        extra = sorted(set(arrays) - set(shapes))
        if extra:
            raise ResultsFileError(f"{path}: arrays {extra[:3]} are not in the header; the file is damaged")
    for key in header.get("arrays") or {}:
        if "<" in key:
            continue
        match = re.fullmatch(r"(.*)\{(.*)\}", key)
        for name in ([match.group(1) + part for part in match.group(2).split(",")] if match else [key]):
            if name not in arrays:
                raise ResultsFileError(f"{path}: array {name!r} described in the header is missing; "
                                       "the file is damaged")
    configs = header.get("configs")
    if isinstance(header.get("labels"), list) and isinstance(configs, dict):
        missing = [label for label in header["labels"] if label not in configs]
        if missing:
            raise ResultsFileError(f"{path}: labels {missing[:3]} have no configuration in the header")


def identity(header: dict) -> dict:
    """The fields of a header that identify its run (`IDENTITY_FIELDS`), without wall times or dates."""
    fields = {field: header.get(field) for field in IDENTITY_FIELDS if field != "format"}
    fields["overrides"] = fields["overrides"] or {}  # older headers have none
    return fields


def identity_differences(old: dict, new: dict) -> list[str]:
    """Names of the identifying fields in which two headers differ (``[]``: the same run).

    A `moecl.Config` field that an older header's configurations lack (it was added
    since) counts as its default value: the older code ran without that mechanism.
    """
    a, b = (_with_config_defaults(json.loads(json.dumps(identity(header), default=_json_default)))
            for header in (old, new))
    return [field for field in a if a[field] != b[field]]


def _with_config_defaults(fields: dict) -> dict:
    import dataclasses

    from .config import Config

    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    configs = fields.get("configs")
    if isinstance(configs, dict):
        fields["configs"] = {label: ({**defaults, **config} if isinstance(config, dict) and "sigma0" in config
                                     else config) for label, config in configs.items()}
    return fields


def _write_array(archive: zipfile.ZipFile, name: str, value: np.ndarray) -> None:
    if value.dtype.hasobject:
        raise ValueError(f"array {name!r} has dtype object, which a results file does not store")
    with archive.open(name + ".npy", "w", force_zip64=True) as member:
        np.lib.format.write_array(member, value, allow_pickle=False)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"header value {value!r} of type {type(value).__name__} is not JSON-serialisable")
