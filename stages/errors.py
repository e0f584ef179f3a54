"""The one kind of failure a user can fix, and the runner that reports it as a single line."""

import os
import sys


class UserError(Exception):
    """Bad params, a missing or malformed file: told to the user in one line, with no traceback."""


def run(main):
    """Run a stage's `main(dataset)` from the command line: `python -m stages.<stage> <dataset>`."""
    stage = main.__globals__["__spec__"].name  # "stages.train" when run with -m
    if len(sys.argv) != 2:
        sys.exit(f"usage: python -m {stage} <dataset>")
    try:
        main(sys.argv[1])
    except UserError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit(130)
    # All written and closed: skip the interpreter's teardown, costly with torch loaded (docs/benchmarks.md).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
