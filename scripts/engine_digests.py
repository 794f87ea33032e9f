"""Bit-for-bit digests of the engine's records, for a refactor on one machine (not a CI test).

A refactor of the engine that must not change its arithmetic keeps every record bit for bit;
a SHA-256 digest of each record of each case of ``tests/engine_cases.py`` shows that, on the
machine where both digests are taken (another CPU's kernels round differently: across
machines, ``tests/test_engine_reference.py`` compares within a stated tolerance):

    python scripts/engine_digests.py write before.json    # on the commit before the change
    python scripts/engine_digests.py compare before.json  # after it, same machine: exit 1 if any changed
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from engine_cases import CASES, RECORDS, run_case  # noqa: E402


def digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    array = np.ascontiguousarray(array)
    h = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    h.update(array.tobytes())
    return h.hexdigest()


def digests() -> dict:
    return {name: [{record: digest(getattr(result, record)) for record in RECORDS} for result in run_case(name)]
            for name in CASES}


def environment() -> dict:
    return {"numpy": np.__version__, "machine": platform.machine(), "node": platform.node()}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write", "compare"):
        print("usage: python scripts/engine_digests.py write|compare FILE", file=sys.stderr)
        return 2
    command, path = argv[0], Path(argv[1])
    if command == "write":
        path.write_text(json.dumps({"environment": environment(), "cases": digests()}, indent=1, sort_keys=True))
        print(f"wrote {path} ({len(CASES)} cases)")
        return 0
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        print(f"engine_digests: cannot read {path}: {error}", file=sys.stderr)
        return 2
    if stored.get("environment") != environment():
        print(f"engine_digests: {path} was taken in {stored.get('environment')}, this is {environment()}; "
              "digests compare only on one machine", file=sys.stderr)
        return 2
    changed = []
    for name, results in digests().items():
        before = stored["cases"].get(name, [])
        for position, records in enumerate(results):
            old = before[position] if position < len(before) else {}
            changed += [f"{name}[{position}]: {record}" for record, value in records.items() if old.get(record) != value]
    for line in changed:
        print(f"changed bit for bit: {line}")
    print(f"{len(changed)} records changed" if changed else f"all records of {len(CASES)} cases unchanged bit for bit")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
