"""Logging: one event per line, JSON off a TTY (or with ``log_format = "json"``), readable on one.

structlog events are rendered and written directly (the cheap path: an access line is written
for every request); records from the standard library (aiohttp, asyncio) get the same fields
and renderer through a logging handler, so a JSON log never has a stray plain-text line in it.
Every line carries ``timestamp``, ``level``, ``logger`` and ``event``; lines about a request
also carry ``request_id`` and, once a session is chosen, ``session_id`` (bound by the request
middleware and the router). Values under keys that could hold a prompt or a secret are
replaced with ``"[redacted]"`` as a last line of defence; nothing should log them at all.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.stdlib import ProcessorFormatter

from mcp_local_provider.core.codec import dumps_bytes
from mcp_local_provider.core.config import Config

#: Keys whose values never reach a log line.
REDACTED_KEYS = frozenset(
    {
        "authorization",
        "api_key",
        "bridge_token",
        "content",
        "input",
        "messages",
        "password",
        "prompt",
        "secret",
        "session_token",
        "suffix",
        "token",
    }
)
REDACTED = "[redacted]"


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in REDACTED_KEYS.intersection(event):
        event[key] = REDACTED
    return event


_LEADING = ("timestamp", "level", "logger", "event", "request_id", "session_id")


def lead(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """Put the fields a reader scans for first, so JSON lines line up."""
    ordered = {key: event[key] for key in _LEADING if key in event}
    ordered.update(event)
    return ordered


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so a second ``configure`` replaces it instead of adding another."""


class _LineWriter:
    """What structlog logs to: one rendered line at a time, and the logger's name."""

    __slots__ = ("name", "stream")

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name

    def msg(self, message: str) -> None:
        self.stream.write(message + "\n")
        self.stream.flush()

    debug = info = warning = warn = error = err = critical = exception = fatal = log = msg


class BoundOnce:
    """A logger for a hot path: bound once per logging configuration, where structlog's
    ``get_logger`` proxy binds anew on every call (it must not cache: the configuration may
    change, as it does between tests). ``get()`` returns the bound logger, rebuilt when
    ``structlog.configure`` was called since; ``emit`` logs through it."""

    __slots__ = ("_chain", "_factory", "_logger", "_processors", "_wrapper", "_writer", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        # The configuration the logger was bound under (none yet).
        self._processors: object = None
        self._wrapper: object = None
        self._factory: object = None
        self._logger: Any = None
        self._chain: tuple[Any, ...] = ()
        self._writer: _LineWriter | None = None

    def get(self) -> Any:
        config = structlog.get_config()
        processors = config["processors"]
        wrapper = config["wrapper_class"]
        factory = config["logger_factory"]
        if (
            processors is not self._processors
            or wrapper is not self._wrapper
            or factory is not self._factory
        ):
            self._logger = structlog.get_logger(self.name).bind()
            self._processors, self._wrapper, self._factory = processors, wrapper, factory
            self._writer = factory(self.name) if isinstance(factory, _Writers) else None
            self._chain = tuple(processors)
        return self._logger

    def emit(self, method: str, event: str, fields: dict[str, Any]) -> None:
        """What ``get().<method>(event, **fields)`` does, for a caller that checked the level
        (``get().is_enabled_for``): the same processors, run on the same event, without
        structlog's per-call machinery (three copies of the fields and three calls) when the
        line goes to our own writer (an access line is written for every request)."""
        writer = self._writer
        if writer is None:
            getattr(self.get(), method)(event, **fields)
            return
        entry: Any = fields  # structlog's order: the bound context (none), the fields, event
        entry["event"] = event
        try:
            for processor in self._chain:
                entry = processor(writer, method, entry)
        except structlog.DropEvent:
            return
        if isinstance(entry, (str, bytes, bytearray)):
            writer.msg(entry)  # type: ignore[arg-type]
        elif isinstance(entry, tuple):
            getattr(writer, method)(*entry[0], **entry[1])
        else:
            getattr(writer, method)(**entry)


class _Writers:
    """structlog's logger factory: a ``_LineWriter`` on one stream for each logger name."""

    __slots__ = ("stream",)

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, *args: Any) -> _LineWriter:
        return _LineWriter(self.stream, str(args[0]) if args else "")


def configure(config: Config, stream: TextIO | None = None) -> logging.Handler:
    """Send every log line to ``stream`` (stderr by default) at ``config.log_level``."""
    stream = stream or sys.stderr
    level = getattr(logging, config.log_level.upper())
    use_json = config.log_format == "json" or (config.log_format == "auto" and not _isatty(stream))
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    rendering: list[structlog.types.Processor] = []
    if use_json:
        rendering += [
            structlog.processors.format_exc_info,
            lead,
            structlog.processors.JSONRenderer(serializer=_json_line),
        ]
    else:
        rendering.append(structlog.dev.ConsoleRenderer(colors=_isatty(stream)))
    structlog.configure(
        processors=[*shared, *rendering],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_Writers(stream),
        cache_logger_on_first_use=False,
    )
    handler = _Handler(stream)
    handler.setFormatter(
        ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[ProcessorFormatter.remove_processors_meta, *rendering],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    # Libraries speak up from warnings on (unless debugging); our own loggers at the level asked.
    root.setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
    logging.getLogger("mcp_local_provider").setLevel(level)
    # The request middleware writes the access lines; aiohttp's own would carry query strings.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return handler


def _json_line(event: Any, default: Callable[[Any], Any] | None = None, **_: Any) -> str:
    """A log line's JSON: pydantic-core's encoder, several times faster than the standard
    library's on the access line written for every request; what it cannot encode goes
    through structlog's fallback (``repr``); the codec's own fallback to the standard
    library covers what pydantic-core refuses, so a log line never fails."""
    return dumps_bytes(event, default).decode()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):
        return False
