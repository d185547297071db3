"""structlog set-up, done once at the entry points: pretty in a terminal, JSON lines otherwise. To stderr."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog


def configure_logging(
    level: str = "info", log_format: Literal["auto", "console", "json"] = "auto"
) -> None:
    use_console = log_format == "console" or (log_format == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def configure_logging_from_environment() -> None:
    """What the command does before anything else, so that nothing logged before the settings are read (a broken
    plugin found while the catalogue loads) goes anywhere but stderr, in the format asked for."""
    import os

    level = os.environ.get("AGENTLOG_LOG_LEVEL", "info").lower()
    log_format = os.environ.get("AGENTLOG_LOG_FORMAT", "auto").lower()
    configure_logging(
        level if level in {"debug", "info", "warning", "error"} else "info",
        log_format if log_format in {"console", "json"} else "auto",  # type: ignore[arg-type]
    )
