"""A stage's entry point: `run(main)` at the end of each stage module, which `python -m stages.<stage>
<dataset>` (or the warm worker's child, stages/worker.py) executes. It checks the dataset's name, runs
`main(name)`, and tells a UserError in one line with exit code 1, and a library's warning in one line.
"""

import os
import sys
import warnings

from stages.errors import UserError, one_line_warning
from stages.params import DATASET_NAME, check_dataset_name, load_params


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
    name = " ".join(sys.argv[1:])
    if len(sys.argv) == 2 and DATASET_NAME.fullmatch(name):
        return name
    load_params()
    if len(sys.argv) == 1:
        return None
    check_dataset_name(name)  # refuses it: pieces are joined by a space, which no name holds
    return name
