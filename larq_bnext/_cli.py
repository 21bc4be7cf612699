"""What the command-line programs share: argument checks and user-facing errors.

Each program defines its flags in a ``define_flags(flag_values)`` function that runs only when
the module runs as a program, so that importing one (for its ``run`` function, or beside
:mod:`larq_bnext.train`, which also has ``--model``) claims no names in absl's global registry.
"""

from __future__ import annotations

import contextlib
import sys

from absl import app

# Errors that name the problem and its fix: printed as one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError, ImportError)


def no_arguments(argv) -> None:
    """Refuse positional arguments left after absl parsed the flags."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")


@contextlib.contextmanager
def user_errors_exit():
    """Print a user error as ``error: ...`` on stderr and exit with status 2."""
    try:
        yield
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
