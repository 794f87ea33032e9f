"""``python -m moecl``: the command line of `moecl.cli`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
