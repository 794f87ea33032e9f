"""The file formats of the data sets, read defensively (`moecl.deep.datasets` builds the loaders on them).

`read_idx` (MNIST's IDX, gzip or raw), `read_cifar_pickle` (CIFAR's python pickles, with
an unpickler that admits numpy arrays and nothing else), `read_rgb` (one image file) and
`read_text` (a UTF-8 text file). Sizes are checked before anything is allocated: IDX
headers promising more than `MAX_IDX_VALUES` values, gzip streams past the promised
size, images over `MAX_IMAGE_PIXELS` pixels (decompression bombs) and pickled arrays (every way
numpy can be asked to allocate one, and lists shared through the memo)
larger than their file are refused. Every error is one line naming the path: a
`DataError` (a `ValueError`) for a corrupt or implausible file, a `PermissionError` for
an unreadable one (`open_binary`), `FileNotFoundError` for a missing one.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
from pathlib import Path

import numpy as np

from ..errors import DataError


#: Largest image (pixels) the loaders decode: Tiny ImageNet's are 64 x 64, so a larger one is
#: a damaged or hostile file (a decompression bomb), refused before it is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096


#: Largest IDX payload (values) accepted: the MNIST training images hold 47 million; a
#: header promising more is corrupt, and the gzip stream is never decompressed past it.
MAX_IDX_VALUES = 2**28


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzip-compressed or raw, as a uint8 array.

    Layout: two zero bytes, a type byte (0x08 = unsigned byte), a byte giving the number
    of dimensions, one big-endian uint32 per dimension, then the values in C order.
    Raises `FileNotFoundError` if absent, `PermissionError` if unreadable and `DataError`
    if the header is wrong, promises more than `MAX_IDX_VALUES` values, or the file is
    truncated or has trailing bytes. A gzip file is never decompressed past the size its
    header promises (a decompression bomb stops there).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open_binary(path)) as handle:
            head = handle.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"{path}: not an IDX file (bad magic number)")
            if head[2] != 0x08:
                raise DataError(f"{path}: IDX type code {head[2]:#04x} is not 0x08 (unsigned byte)")
            ndim = head[3]
            dims = handle.read(4 * ndim)
            if ndim == 0 or len(dims) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            shape = tuple(int(n) for n in np.frombuffer(dims, dtype=">u4", count=ndim))
            expected = math.prod(shape)  # Python ints: no overflow
            if expected > MAX_IDX_VALUES:
                raise DataError(f"{path}: IDX header promises {expected:,} values of shape {shape}, more than "
                                f"the {MAX_IDX_VALUES:,} an MNIST file can hold; the file is corrupt")
            payload = handle.read(expected + 1)
    except PermissionError as error:
        raise PermissionError(f"{path}: permission denied ({error.strerror or error})") from error
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot decompress ({error}); the file is corrupt or truncated") from error
    if len(payload) != expected:
        found = f"more than {expected}" if len(payload) > expected else str(len(payload))
        raise DataError(f"{path}: IDX header promises {expected} values of shape {shape} "
                        f"but the file holds {found}; it is truncated or corrupt")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def open_binary(path: Path):
    """``open(path, "rb")`` with a permission error that names the path in one line."""
    try:
        return open(path, "rb")
    except PermissionError as error:
        raise PermissionError(f"{path}: permission denied ({error.strerror or error})") from error


def read_text(path: Path) -> str:
    """A UTF-8 text file of a data set; a file that is not UTF-8 (or holds NUL bytes, as UTF-16 text
    does) is a `DataError` naming it."""
    with open_binary(path) as handle:
        raw = handle.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        hint = " (UTF-16?)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise DataError(f"{path}: not UTF-8 text{hint} (byte {error.start}: {error.reason}); "
                        "the file is corrupt") from error
    if "\x00" in text:  # valid UTF-8, but no text file of a data set holds NUL: UTF-16 without its mark
        raise DataError(f"{path}: text with NUL bytes (byte {text.index(chr(0))}), not UTF-8 (UTF-16?); "
                        "the file is corrupt")
    return text


#: The only globals a CIFAR pickle may name: numpy's array reconstruction (old and new paths).
_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


#: The encodings ``_codecs.encode`` may apply in a CIFAR pickle: Python 2's byte strings arrive as
#: latin-1 text and numpy's pickles turn them back into bytes this way (one byte per character).
_PICKLE_ENCODINGS = ("latin1", "latin-1", "iso-8859-1", "iso8859-1")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that refuses every global except numpy's array reconstruction.

    Unpickling can run arbitrary code; the CIFAR batches only need dicts, lists, bytes,
    numbers and numpy arrays, so nothing else is allowed. Every way the admitted globals
    can allocate an array is checked against ``limit`` bytes (the size of the file:
    every array's data must come from it) before numpy allocates: a direct
    ``numpy.ndarray(shape, ...)`` call (REDUCE or NEWOBJ), ``_reconstruct`` and the
    ``__setstate__`` that follows it (whose shape may differ), and ``_frombuffer``.
    Arrays are built as the subclass `_CheckedArray` so that their ``__setstate__`` is
    ours; `read_cifar_pickle` turns them back into plain arrays. Object dtypes are refused
    (numpy itself crashes on an object array whose state is shorter than its shape), and
    ``_codecs.encode`` may only apply latin-1 (other codecs, ``hex_codec`` say, expand).
    """

    def __init__(self, handle, limit: int, **kwargs):
        super().__init__(handle, **kwargs)
        self.limit = limit
        check = self._check_size

        class _CheckedArray(np.ndarray):
            def __new__(cls, shape, dtype=float, buffer=None, offset=0, strides=None, order=None):
                check(shape, dtype)
                return np.ndarray.__new__(np.ndarray, shape, dtype, buffer, offset, strides, order)

            def __setstate__(self, state):
                if not isinstance(state, tuple) or len(state) not in (4, 5):
                    raise pickle.UnpicklingError(f"array state {type(state).__name__} of length "
                                                 f"{len(state) if isinstance(state, tuple) else '?'} is not numpy's")
                shape, dtype, raw = state[-4], state[-3], state[-1]
                size = check(shape, dtype)
                if not isinstance(raw, (bytes, str)) or len(raw) != size:
                    raise pickle.UnpicklingError(f"array state holds {type(raw).__name__} data "
                                                 f"({len(raw) if isinstance(raw, (bytes, str, list)) else '?'} "
                                                 f"items) for an array of {size:,} bytes")
                np.ndarray.__setstate__(self, state)

        self.array_type = _CheckedArray

    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        found = super().find_class(module, name)
        if name == "ndarray":
            return self.array_type
        if name == "_reconstruct":
            def reconstruct(subtype, shape, dtype, *args):
                if subtype is not self.array_type:
                    raise pickle.UnpicklingError(f"_reconstruct of {subtype!r} is not allowed in a CIFAR batch")
                self._check_size(shape, dtype)
                return found(subtype, shape, dtype, *args)
            return reconstruct
        if name == "_frombuffer":
            def frombuffer(buffer, dtype, shape, *args):
                self._check_size(shape, dtype)
                return found(buffer, dtype, shape, *args)
            return frombuffer
        if name == "dtype":
            def dtype(*args):
                made = np.dtype(*args)
                if made.hasobject:
                    raise pickle.UnpicklingError(f"an array of dtype {made} (Python objects) is not allowed")
                return made
            return dtype
        if name == "encode":
            def encode(text, encoding="utf-8", *args):
                if not isinstance(encoding, str) or encoding.lower() not in _PICKLE_ENCODINGS:
                    raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed (only latin1)")
                return found(text, encoding, *args)
            return encode
        return found

    def _check_size(self, shape, dtype) -> int:
        """The bytes of an array of ``shape`` and ``dtype``; UnpicklingError if more than the file holds."""
        try:
            dims = [int(n) for n in (shape if isinstance(shape, (tuple, list)) else (shape,))]
            dtype = np.dtype(dtype)
            size = math.prod(dims) * dtype.itemsize
        except (TypeError, ValueError, OverflowError) as error:
            raise pickle.UnpicklingError(f"array of shape {shape!r} and dtype {dtype!r}: {error}") from None
        if dtype.hasobject:
            raise pickle.UnpicklingError(f"an array of dtype {dtype} (Python objects) is not allowed")
        if any(n < 0 for n in dims) or size > self.limit:
            raise pickle.UnpicklingError(f"an array of shape {tuple(dims)!r} ({size:,} bytes) is larger than the file "
                                         f"({self.limit:,} bytes) could hold")
        return size


def _plain(value, array_type, limit: int, path: Path):
    """``value`` with the unpickler's checked arrays as plain ones, and lists that would become more values
    than the file holds (shared through the pickle's memo, a few bytes can stand for a long list) refused."""
    counts: dict[int, int] = {}

    def values(item) -> int:  # leaf values of a (nested) list, shared sub-lists counted every time
        if not isinstance(item, list):
            return int(item.size) if isinstance(item, np.ndarray) else 1
        if id(item) not in counts:
            counts[id(item)] = 0  # a list that contains itself counts once
            counts[id(item)] = min(sum(values(child) for child in item), limit + 1)
        return counts[id(item)]

    def plain(item):
        if isinstance(item, array_type):
            return item.view(np.ndarray)
        if isinstance(item, list):
            return [plain(child) for child in item]
        return item

    try:
        if isinstance(value, list):
            found = values(value)
            if found > limit:
                raise DataError(f"{path}: a list of more than {limit:,} values is larger than the file "
                                f"({limit:,} bytes) could hold; the file is corrupt or hostile")
        return plain(value)
    except RecursionError:
        raise DataError(f"{path}: lists nested too deeply for a CIFAR batch; the file is corrupt or hostile") from None


def read_cifar_pickle(path: str | os.PathLike) -> dict:
    """Read one CIFAR python batch (``data_batch_1``, ``test``, ``meta``, ...) as a dict with str keys.

    The official files are Python 2 pickles (bytes keys); ``encoding="latin1"`` reads their
    numpy arrays, and keys and byte strings are decoded to str. Nothing the file declares
    can ask for more memory than the file's size (`_CifarUnpickler`; lists too): a file that
    does is refused, as is every other unreadable one, with a `DataError` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR file not found: {path}")
    try:
        with open_binary(path) as handle:
            limit = os.fstat(handle.fileno()).st_size
            unpickler = _CifarUnpickler(handle, limit, encoding="latin1")
            entry = unpickler.load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, ImportError, MemoryError, OverflowError, RecursionError) as error:
        raise DataError(f"{path}: not a readable CIFAR python pickle ({type(error).__name__}: "
                        f"{' '.join(str(error).split())}); the file is corrupt or truncated") from error
    if not isinstance(entry, dict):
        raise DataError(f"{path}: a CIFAR batch must be a dict, found {type(entry).__name__}")

    def text(value):
        return value.decode("latin1") if isinstance(value, bytes) else value

    entry = {key: _plain(value, unpickler.array_type, limit, path) for key, value in entry.items()}
    return {text(key): ([text(v) for v in value] if isinstance(value, list) else value)
            for key, value in entry.items()}


def read_rgb(path: Path) -> np.ndarray:
    """One image file as uint8 H x W x 3 (greyscale and other modes converted to RGB)."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with open_binary(path) as handle, Image.open(handle) as image:
            width, height = image.size  # from the header, before any pixel is decoded
            if width * height > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: image of {width} x {height} pixels is larger than {MAX_IMAGE_PIXELS:,} "
                                "pixels (a decompression bomb?); refused")
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (DataError, PermissionError):
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"{path}: cannot decode image ({error}); the file is corrupt or truncated") from error
