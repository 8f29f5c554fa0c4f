"""`stylemri` command line: one argparse tree, one sub-module per command group.

Only this package prints; library code returns values. A `UserError` or an `OSError` (disk full, read-only
folder, a file where a folder belongs) anywhere becomes one line on stderr and exit code 2, never a
traceback; a `StylemriWarning` becomes one `stylemri: warning:` line. SIGTERM (a scheduler's time limit, `kill`)
unwinds the command like Ctrl-C does, so every temporary file is removed, and exits 143 (128 + SIGTERM);
`train` installs its own handlers (checkpoint first) for both signals.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import warnings
from typing import Any, Iterator, Sequence

from stylemri import __version__
from stylemri.errors import StylemriWarning, UserError, describe_oserror

# Each module defines `register(subparsers)`, adding its command(s) with `set_defaults(func=...)`.
COMMAND_MODULES: list[str] = [
    "stylemri.cli.data",
    "stylemri.cli.train",
    "stylemri.cli.metrics",
    "stylemri.cli.evaluate",
    "stylemri.cli.info",
    "stylemri.cli.use",
    "stylemri.cli.analyse",
    "stylemri.cli.audit",
    "stylemri.cli.explore",
    "stylemri.cli.interop",
]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `stylemri train: error: ... (see --help)`, exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="stylemri",
        description="Train StyleGAN-family models on brain-MRI slices, then generate, analyse and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"stylemri {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM arrived: raised in the main thread so `with` blocks and `except BaseException` clean-ups run
    (atomic writes drop their temporary files) instead of the process dying where it stands."""


TERMINATED_EXIT = 128 + signal.SIGTERM  # 143, as a shell reports a process killed by SIGTERM


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """While a command runs, SIGTERM raises `Terminated` (main thread only; other callers keep theirs)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # the shared flags' validators raise UserError while parsing
        with _sigterm_unwinds(), warnings.catch_warnings():
            warnings.simplefilter("always", StylemriWarning)
            warnings.showwarning = _show_warning
            rc = args.func(args)
    except UserError as exc:
        print(f"stylemri: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the one place file-system failures become a line: path and reason
        print(f"stylemri: error: {describe_oserror(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stylemri: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("stylemri: terminated (SIGTERM); nothing half-written was left", file=sys.stderr)
        return TERMINATED_EXIT
    return int(rc or 0)


_default_showwarning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    """Our own warnings as one line; anything else (a library's DeprecationWarning) as Python shows it."""
    if issubclass(category, StylemriWarning):
        print(f"stylemri: warning: {message}", file=sys.stderr, flush=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)
