"""One atomic file write for the whole package: results files and deep checkpoints.

`write_atomically(path, write)` calls ``write(stream)`` on a new hidden file beside
``path``, flushes and fsyncs it, moves it over ``path`` with ``os.replace`` and fsyncs the
folder. If anything fails, or the process is interrupted (Ctrl-C, SIGTERM, SIGHUP), the
temporary file is removed and an older file at ``path`` is left as it was; a termination
signal is then delivered again, so the process ends as the signal asked.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
from typing import BinaryIO, Callable


def write_atomically(path, write: Callable[[BinaryIO], None]) -> str:
    """Write ``path`` through ``write(stream)``, all or nothing (see the module docstring)."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with _SignalsRaise() as caught:
        temporary, handle = _open_temporary(directory, os.path.basename(path))
        try:
            with os.fdopen(handle, "wb") as stream:
                write(stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            if caught:  # the temporary file is gone: now let the signal end the process
                _redeliver(caught[0])
            raise
    _fsync_directory(directory)
    return path


class Signalled(BaseException):
    """A termination signal, raised inside `write_atomically` so that it can clean up."""


class _SignalsRaise:
    """While a file is written, SIGTERM and SIGHUP raise `Signalled` (main thread only).

    Their default action kills the process on the spot, which would leave the temporary
    file behind; a handler installed by the program itself is left alone.
    """

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))

    def __enter__(self):
        self.caught, self.previous = [], {}
        if threading.current_thread() is threading.main_thread():
            for number in self.SIGNALS:
                if signal.getsignal(number) is signal.SIG_DFL:
                    self.previous[number] = signal.signal(number, self._handle)
        return self.caught

    def _handle(self, number, frame):
        self.caught.append(number)
        raise Signalled(number)

    def __exit__(self, *exc):
        for number, previous in self.previous.items():
            signal.signal(number, previous)
        return False


def _redeliver(number: int) -> None:
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)


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
