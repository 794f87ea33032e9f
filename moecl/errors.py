"""The package's error types, in one place (each a subclass of the built-in error it refines).

The command line maps them to its exit status (`moecl.cli`): a value that cannot run is a
``ValueError`` (status 2); data or files that cannot be read, a sweep piece that failed
twice, a cluster that cannot be reached are status 1. Each is also importable from the
module that raises it (``moecl.limits.RunLimitError``, ``moecl.deep.readers.DataError``, ...).
This module imports nothing, so every module may import it.
"""

from __future__ import annotations

import os


class RunLimitError(ValueError):
    """A run refused before it starts (memory), or results refused after it (non-finite numbers)."""


class ResultsFileError(ValueError):
    """A file that is not a readable moecl results file."""


class DataError(ValueError):
    """A data file that is corrupt, truncated or implausible (the message names the path)."""


class DataDirError(FileNotFoundError):
    """``MOECL_DATA`` names a folder that is missing or holds no data set."""


class CheckpointError(OSError):
    """A checkpoint that cannot be read back (truncated, corrupt, edited, not a checkpoint)."""

    def __init__(self, path, reason: str):
        path = os.fspath(path)
        super().__init__(f"checkpoint {path!r} is unusable ({reason}); it can be deleted "
                         f"(the run then starts from round 1): rm {path!r}")


class SweepError(RuntimeError):
    """A piece of a sweep failed twice; the message names its configurations and replicates."""


class ClusterError(RuntimeError):
    """The executor asked for cannot be made (Dask missing, scheduler unreachable)."""


__all__ = ["CheckpointError", "ClusterError", "DataDirError", "DataError", "ResultsFileError", "RunLimitError",
           "SweepError"]
