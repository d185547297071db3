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
    _route_standard_logging(renderer)


def _route_standard_logging(renderer: structlog.typing.Processor) -> None:
    """Libraries that log through `logging` (uvicorn, the mcp SDK, alembic) come out as our lines too, warnings
    and up: one format on stderr, so JSON logs stay JSON lines. A root handler of ours also turns a library's own
    `logging.basicConfig` (the mcp SDK calls one, with a rich handler) into the no-op it is on a configured root."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
        )
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_agentlog", False):
            root.removeHandler(existing)
    handler._agentlog = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


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
