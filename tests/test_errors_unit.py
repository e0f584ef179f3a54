"""stages.errors in-process; tests/test_errors.py runs the stages' real command lines (e2e)."""

import warnings

from stages.errors import one_line_warning


def test_a_warning_of_many_lines_is_shown_as_its_first(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = one_line_warning  # as stages.runner.run sets it
        warnings.warn("first line\n  second line\nthird", RuntimeWarning, stacklevel=1)
        warnings.warn("\n", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "warning: RuntimeWarning: first line\nwarning: UserWarning: \n"
