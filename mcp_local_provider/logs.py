"""structlog set-up: one event per line, JSON off a TTY, readable on one."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from .config import Config


def configure(config: Config, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    level = getattr(logging, config.log_level.upper())
    use_json = config.log_format == "json" or (config.log_format == "auto" and not _isatty(stream))
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=stream, format="%(message)s")


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):
        return False
