"""The errors grounding raises for what a user gave or asked that cannot be done. They share one
base, which carries the exit code the command line ends with, the HTTP status the server answers
with, and, where known, the option the error is about; the command line
(`interfaces/common.py: Command`) and the server (`interfaces/server/app.py`) each handle them in
one place. Each also is the built-in error its callers have always caught (a `BadInput` is a
ValueError), so `except ValueError` in user code keeps working."""
from __future__ import annotations

from contextlib import contextmanager
from importlib import import_module
from types import ModuleType
from typing import Iterator


class GroundingError(Exception):
    """One line that names the file, value or option and the fix."""

    exit_code = 2  # as for a bad option: the command did nothing
    http_status = 400
    heading = "Error"  # how the command line's one line begins

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class BadInput(GroundingError, ValueError):
    """A value, file or configuration that cannot be used as it is."""


class NotFound(GroundingError, FileNotFoundError):
    """A file, folder, model or package that is not there."""

    http_status = 404


class AlreadyExists(GroundingError, FileExistsError):
    """A folder that holds something that must not be overwritten, or that another job holds."""

    http_status = 409


class MissingDependency(GroundingError, ImportError):
    """An optional package a feature needs; the message names the extra that brings it."""

    http_status = 501


@contextmanager
def about(option: str) -> Iterator[None]:
    """Errors raised inside are said to be about `option` (unless they name one already)."""
    try:
        yield
    except GroundingError as e:
        e.option = e.option or option
        raise


def need(module: str, extra: str, what: str) -> ModuleType:
    """The optional `module`, or one MissingDependency saying that `what` needs the extra that
    brings it (pyproject.toml's optional dependencies; README: Dependencies)."""
    try:
        return import_module(module)
    except ImportError:
        raise MissingDependency(f"{what} needs {module}: pip install 'grounding[{extra}]'") from None
