"""What every command shares: settings, logging, the error path (one line on stderr, an exit code), output."""

from __future__ import annotations

import asyncio
import enum
import sys
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from agentlog.config import Settings
from agentlog.embedded import EmbeddedServerError
from agentlog.eventstore.errors import (
    AgentlogError,
    ConcurrencyRetryError,
    DatabaseUnavailableError,
    EventIdConflictError,
    InvalidEventError,
    LogMovedError,
    NotFoundError,
    SchemaNotReadyError,
    WrongExpectedVersionError,
)
from agentlog.logs import configure_logging

# Piped output is read by programs and people with wide screens: don't cut tables to 80 columns there.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    INVALID_INPUT = 3
    CONFLICT = 4
    DATABASE_UNAVAILABLE = 5
    DIFFERENCES = 6


def exit_code_for(error: AgentlogError) -> ExitCode:
    if isinstance(error, InvalidEventError | NotFoundError):
        return ExitCode.INVALID_INPUT
    if isinstance(error, WrongExpectedVersionError | EventIdConflictError | ConcurrencyRetryError):
        return ExitCode.CONFLICT
    if isinstance(error, DatabaseUnavailableError | SchemaNotReadyError | EmbeddedServerError | LogMovedError):
        return ExitCode.DATABASE_UNAVAILABLE
    return ExitCode.FAILED


def fail(message: str, code: ExitCode) -> NoReturn:
    err.print(f"agentlog: error: {message}", markup=False)
    raise typer.Exit(int(code))


def load_settings() -> Settings:
    try:
        settings = Settings()
    except ValueError as error:
        fail(f"bad AGENTLOG_* setting: {error}", ExitCode.USAGE)
    configure_logging(settings.log_level, settings.log_format)
    return settings


P = ParamSpec("P")
T = TypeVar("T")


def handles_errors(command: Callable[P, T]) -> Callable[P, T]:
    """Turn agentlog's exceptions into one line on stderr and the matching exit code."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return command(*args, **kwargs)
        except AgentlogError as error:
            fail(str(error).splitlines()[0] if str(error) else type(error).__name__, exit_code_for(error))
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def write_line(text: str) -> None:
    """One line of data on stdout, flushed at once (so `agentlog tail | ...` sees it immediately)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
