"""The one exception type the CLI turns into a one-line message and exit code 2, and its warning twin."""

from __future__ import annotations

import os


class UserError(Exception):
    """Bad input from the user (path, value, file): the message names it and says what was expected."""


class StylemriWarning(UserWarning):
    """Something the user should know but that does not stop the command (e.g. a damaged checkpoint was
    skipped); library code `warnings.warn`s it, the CLI prints it as one `stylemri: warning:` line."""


def describe_oserror(exc: OSError) -> str:
    """An OSError as one line naming the path(s) and the reason: `runs/x/config.json: No space left on device`."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [os.fspath(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason
