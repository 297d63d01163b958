"""User-facing errors.

Everything that goes wrong because of the user's input or environment (a bad
file, a bad option, an unwritable folder) raises :class:`AelabError` or one of
its subclasses. The CLI (and the benchmark scripts, through :func:`run_script`)
prints such an error as one line and exits with status 2; anything else is a
bug in aelab and keeps its traceback.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

EXIT_USER_ERROR = 2  # the exit status of an AelabError, in the CLI and the scripts


class AelabError(Exception):
    """An error the user can fix: says what was wrong, where, and how to fix it."""

    def __init__(self, message: str, *, path: str | os.PathLike | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.path = None if path is None else os.fspath(path)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}" if self.path else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class DataError(AelabError):
    """A dataset or image file that cannot be read, or data that is not valid."""


class CheckpointError(AelabError):
    """A checkpoint that is missing, damaged or inconsistent."""


class OptionError(AelabError, ValueError):
    """A parameter or command-line option with a value aelab cannot use."""


class OutputError(AelabError):
    """An output path that cannot be written."""


def run_script(main: Callable[[], int | None], name: str) -> int:
    """Run a script's ``main`` as the CLI runs a command: an :class:`AelabError` becomes one line on
    stderr (``NAME: error: ...``) and exit status 2, not a traceback. For ``benchmarks/*.py``."""
    try:
        return int(main() or 0)
    except AelabError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
