"""The one kind of failure a user can fix, and how a library's warning is told: each in one line
(stages/runner.py reports them)."""

import sys


class UserError(Exception):
    """Bad params, a missing or malformed file: told to the user in one line, with no traceback."""


PARAMS_FILE = "params.yaml"


class ParamsError(UserError):
    """A bad value in params.yaml (stages/params.py's schema, stages/memory.py's estimate)."""


def one_line_warning(message, category, filename, lineno, file=None, line=None):
    """A library's warning in one line, in place of Python's message and source line (and whatever
    else the message spans): `warning: <category>: <its first line>`."""
    lines = str(message).strip().splitlines() or [""]
    print(f"warning: {category.__name__}: {lines[0]}", file=file or sys.stderr)
