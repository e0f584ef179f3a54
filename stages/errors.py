"""The one kind of failure a user can fix, and the runner that reports it as a single line."""

import os
import sys
import warnings


class UserError(Exception):
    """Bad params, a missing or malformed file: told to the user in one line, with no traceback."""


def run(main):
    """Run a stage's `main(dataset)` from the command line: `python -m stages.<stage> <dataset>`."""
    stage = main.__globals__["__spec__"].name  # "stages.train" when run with -m
    warnings.showwarning = one_line_warning
    try:
        name = dataset_name()
        if name is None:
            sys.exit(f"usage: python -m {stage} <dataset>")
        main(name)
    except UserError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit(130)
    # All written and closed: skip the interpreter's teardown, costly with torch loaded (docs/benchmarks.md).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def dataset_name() -> str | None:
    """The dataset the command line names, if it follows the name rule; None if it names none.

    DVC runs a stage's `cmd` in a shell, ${key} substituted as written: inside dvc.yaml's double
    quotes a name arrives whole, but one with $, a backslash or " changed, and typed by hand unquoted, one
    with a space arrives in pieces. So a bad name in params.yaml is refused as written there
    (load_params checks every name) whatever the shell made of it, and only then is a bad name typed
    on the command line refused as given.
    """
    from stages.params import DATASET_NAME, check_dataset_name, load_params  # noqa: PLC0415 - it imports us

    name = " ".join(sys.argv[1:])
    if len(sys.argv) == 2 and DATASET_NAME.fullmatch(name):
        return name
    load_params()
    if len(sys.argv) == 1:
        return None
    check_dataset_name(name)  # refuses it: pieces are joined by a space, which no name holds
    return name


def one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A library's warning in one line, in place of Python's message and source line (and whatever
    else the message spans): `warning: <category>: <its first line>`."""
    lines = str(message).strip().splitlines() or [""]
    print(f"warning: {category.__name__}: {lines[0]}", file=file or sys.stderr)
