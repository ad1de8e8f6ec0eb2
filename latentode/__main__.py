"""``python -m latentode``: the same command line as the ``latentode`` script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
