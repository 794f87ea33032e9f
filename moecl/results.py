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
file at the same path. `load_results` reads one back and validates it: the archive (every
size it declares checked against explicit limits before anything is decompressed), the
format tag and version (a known older version is read, an unknown newer one refused),
and the schema (every header field's type and value, every array the header's ``shapes``
and ``arrays`` fields name present with the shape and dtype it states, only bool, integer
and float arrays, float summaries, no infinite values); it raises `ResultsFileError` (a
`ValueError`), in one line naming the path, when the file is not a valid results file.

Loading a results file needs nothing but numpy and json::

    with np.load(path) as archive:
        header = json.loads(str(archive["__header__"]))
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import stat
import warnings
import zipfile

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
#: JSON types of the header fields `load_results` checks where present (``format`` is required;
#: ``shapes`` too from version 2 on). `check_header` checks their values too (`_FIELD_RULES`).
FIELD_TYPES = {"format": str, "experiment": str, "scale": str, "seed": int, "replicates": int, "rounds": int,
               "labels": list, "configs": dict, "arrays": dict, "overrides": dict, "shapes": dict, "dtypes": dict,
               "wall_time": (int, float), "created": str, "moecl_version": str, "numpy_version": str,
               "description": str, "stream": str, "source": str, "seeds": list, "seeds_per_piece": int,
               "simulation_wall_times": dict, "scenarios": list, "data_fallback": str}
#: Limits on what `load_results` reads, checked against the archive's own declarations (zip directory,
#: ``.npy`` headers) before anything is decompressed: a results file holds summaries, so the stored ones
#: expand to 3 to 62 MB; a file declaring more is damaged or hostile (a zip bomb).
MAX_MEMBERS = 100_000
MAX_UNCOMPRESSED_BYTES = 2**31
MAX_HEADER_BYTES = 2**24
#: Array dtype kinds a results file may hold: bool, integers, floats (`summarise`'s statistics are floats)
#: and fixed-width texts (the labels of a grid, e.g. ``grid/T1`` of ``predictions``).
ARRAY_KINDS = "biufU"
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
    header = {"format": FORMAT, **header, "shapes": {name: list(value.shape) for name, value in arrays.items()},
              "dtypes": {name: value.dtype.str for name, value in arrays.items()}}
    header_text = json.dumps(header, default=_json_default, sort_keys=False)

    def write(stream):
        with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            _write_array(archive, HEADER_KEY, np.array(header_text))
            for name, value in arrays.items():
                _write_array(archive, name, value)

    return write_atomically(path, write)


def load_results(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and validate a results file: returns ``(header, arrays)`` as given to `save_results`.

    Raises `FileNotFoundError` for a missing file and `ResultsFileError` (one line naming
    the path) for anything else that is not a valid results file: not a regular file, not
    a zip archive or a damaged one (directory, compression method, CRC), members that are
    not ``.npy`` arrays, sizes past `MAX_MEMBERS` / `MAX_UNCOMPRESSED_BYTES` declared in
    the zip directory (zip bombs: refused before anything is decompressed), an ``.npy``
    header whose shape and dtype need more bytes than the member declares, no header, a
    header that is not a JSON object or whose fields break the schema (`check_header`),
    another format, a version newer than this package reads (`READABLE_VERSIONS`), or
    arrays that do not match the header (`check_schema`).

    The archive is read with `zipfile` and `numpy.lib.format` (header first, data after
    its size is checked) rather than ``np.load``, so that every declared size is checked
    before it is allocated.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no results file at {path}")
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ResultsFileError(f"{path} is not a moecl results file (not a regular file)")
    try:
        members = _read_archive(path)
        if HEADER_KEY not in members:
            raise ResultsFileError(f"{path} is not a moecl results file (no {HEADER_KEY} entry)")
        text = members.pop(HEADER_KEY)
        if text.dtype.kind != "U" or text.shape != ():
            raise ResultsFileError(f"{path}: its header is a {text.dtype} array of shape {text.shape}, "
                                   "not a text; the file is damaged")
        header = json.loads(str(text))
    except ResultsFileError:
        raise
    except RecursionError:
        raise ResultsFileError(f"{path} is not a readable moecl results file: its header is nested too deeply") from None
    except MemoryError:
        raise ResultsFileError(f"{path} is not a readable moecl results file: it needs more memory than there is") \
            from None
    except Exception as exc:  # every way damaged bytes fail in zipfile, zlib, numpy's header parser and json
        raise ResultsFileError(f"{path} is not a readable moecl results file "
                               f"({type(exc).__name__}: {_one_line(exc)})") from exc
    if not isinstance(header, dict):
        raise ResultsFileError(f"{path} is not a moecl results file (its header is not a JSON object)")
    check_header(header, path)
    check_schema(header, members, path)
    return header, members


def _one_line(value) -> str:
    return " ".join(str(value).split())[:300]


def _read_archive(path: str) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, every declared size checked before it is read (see `load_results`)."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ResultsFileError(f"{path}: {len(infos):,} archive members, more than the {MAX_MEMBERS:,} "
                                   "a results file holds; the file is damaged")
        declared = sum(info.file_size for info in infos)
        if declared > MAX_UNCOMPRESSED_BYTES:
            raise ResultsFileError(f"{path}: the archive declares {declared:,} bytes uncompressed, more than "
                                   f"the {MAX_UNCOMPRESSED_BYTES:,} a results file may hold (a zip bomb?); refused")
        arrays = {}
        for info in infos:
            if not info.filename.endswith(".npy") or info.is_dir():
                raise ResultsFileError(f"{path}: archive member {info.filename[:80]!r} is not an .npy array; "
                                       "the file is damaged")
            name = info.filename[:-4]
            if name in arrays:
                raise ResultsFileError(f"{path}: array {name[:80]!r} is stored twice; the file is damaged")
            with archive.open(info) as member:
                arrays[name] = _read_member(member, info, name, path)
    return arrays


def _read_member(member, info: zipfile.ZipInfo, name: str, path: str) -> np.ndarray:
    """One ``.npy`` member: header (`numpy.lib.format`), its size against the member's declared size, then the data."""
    fmt = np.lib.format
    version = fmt.read_magic(member)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise ResultsFileError(f"{path}: array {name!r} has .npy version {version}")
    reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
    shape, fortran, dtype = reader(member, max_header_size=10_000)
    where = f"{path}: array {name!r}"
    if dtype.hasobject:
        raise ResultsFileError(f"{where} has dtype object, which a results file does not store; refused")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > info.file_size or (name == HEADER_KEY and nbytes > MAX_HEADER_BYTES):
        raise ResultsFileError(f"{where} declares shape {shape} of {dtype} ({nbytes:,} bytes), more than "
                               f"its {info.file_size:,} bytes in the archive; the file is damaged")
    data = bytearray(nbytes)
    view, done = memoryview(data), 0
    while done < nbytes:
        got = member.readinto(view[done:done + 2**24])
        if not got:
            raise ResultsFileError(f"{where} is truncated ({done:,} of {nbytes:,} bytes); the file is damaged")
        done += got
    if member.read(1):
        raise ResultsFileError(f"{where} has bytes past its shape {shape}; the file is damaged")
    array = np.frombuffer(data, dtype=dtype)
    return array.reshape(shape[::-1]).transpose() if fortran else array.reshape(shape)


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
            name = kind.__name__ if isinstance(kind, type) else "number"
            raise ResultsFileError(f"{path}: header field {field!r} is not a {name} "
                                   f"(found {_one_line(repr(header[field]))[:80]}); the file is damaged")
    if version >= 2 and "shapes" not in header:
        raise ResultsFileError(f"{path}: a version {version} header must list the arrays' shapes ('shapes'); "
                               "the file is damaged")
    for field, (rule, wanted) in _FIELD_RULES.items():
        if field in header and not rule(header[field]):
            raise ResultsFileError(f"{path}: header field {field!r} must be {wanted} "
                                   f"(found {_one_line(repr(header[field]))[:80]}); the file is damaged")
    if isinstance(header.get("seeds"), list) and "replicates" in header and len(header["seeds"]) != header["replicates"]:
        raise ResultsFileError(f"{path}: the header lists {len(header['seeds'])} seeds for "
                               f"{header['replicates']} replicates; the file is damaged")


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
    dtypes = header.get("dtypes") or {}
    for name, array in arrays.items():
        where = f"{path}: array {name!r}"
        if array.dtype.kind not in ARRAY_KINDS:
            raise ResultsFileError(f"{where} has dtype {array.dtype} ({_KIND_NAMES.get(array.dtype.kind, 'other')}); "
                                   "a results file holds bools, integers, floats and texts; the file is damaged")
        if name.rsplit("/", 1)[-1] in STATISTICS and array.dtype.kind != "f":
            raise ResultsFileError(f"{where} is a summary over replicates but has dtype {array.dtype} "
                                   f"({_KIND_NAMES.get(array.dtype.kind, array.dtype.kind)}), not a float; "
                                   "the file is damaged")
        if name in dtypes and np.dtype(dtypes[name]) != array.dtype:
            raise ResultsFileError(f"{where} has dtype {array.dtype}, the header says {dtypes[name]}; "
                                   "the file is damaged")
        if array.dtype.kind == "f" and np.isinf(array).any():
            raise ResultsFileError(f"{where} holds infinite values (moecl writes none: NaN marks an undefined "
                                   "point); the file is damaged")
    configs = header.get("configs")
    if isinstance(header.get("labels"), list) and isinstance(configs, dict):
        missing = [label for label in header["labels"] if label not in configs]
        if missing:
            raise ResultsFileError(f"{path}: labels {missing[:3]} have no configuration in the header")


def _is_count(value, minimum: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _is_dtype(value) -> bool:
    try:
        return isinstance(value, str) and np.dtype(value).kind in ARRAY_KINDS
    except TypeError:
        return False


#: What each header field's value must be, where present (after its JSON type, `FIELD_TYPES`).
_FIELD_RULES = {
    "experiment": (lambda v: bool(v.strip()), "a non-empty name"),
    "scale": (lambda v: bool(v.strip()), "a non-empty name"),
    "seed": (_is_count, "a non-negative integer"),
    "replicates": (lambda v: _is_count(v, 1), "a positive integer"),
    "rounds": (lambda v: _is_count(v, 1), "a positive integer"),
    "seeds_per_piece": (lambda v: _is_count(v, 1), "a positive integer"),
    "wall_time": (lambda v: math.isfinite(v) and v >= 0, "a finite number of seconds >= 0"),
    "labels": (lambda v: all(isinstance(x, str) and x for x in v) and len(set(v)) == len(v),
               "a list of distinct non-empty names"),
    "scenarios": (lambda v: all(isinstance(x, str) and x for x in v), "a list of names"),
    "seeds": (lambda v: all(_is_count(x) for x in v) and len(set(v)) == len(v), "a list of distinct seeds >= 0"),
    "configs": (lambda v: all(isinstance(x, dict) for x in v.values()), "an object of configurations"),
    "arrays": (lambda v: all(isinstance(x, str) for x in v.values()), "an object of descriptions"),
    "shapes": (lambda v: all(isinstance(x, list) and len(x) <= 32 and all(_is_count(n) for n in x)
                             for x in v.values()), "an object of shapes (lists of sizes >= 0)"),
    "dtypes": (lambda v: all(_is_dtype(x) for x in v.values()), "an object of numeric dtypes"),
    "simulation_wall_times": (lambda v: all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                            and math.isfinite(x) and x >= 0 for x in v.values()),
                              "an object of finite times >= 0"),
}

_KIND_NAMES = {"U": "text", "S": "bytes", "c": "complex", "M": "datetime", "m": "timedelta", "O": "object",
               "V": "raw bytes"}


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
