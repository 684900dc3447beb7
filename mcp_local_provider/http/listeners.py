"""Where and how the daemon listens: loopback addresses (127.0.0.1 and [::1]), the options
every connection gets, and the cap on open connections."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable
from typing import Any, cast

import structlog
from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.core.codec import dumps
from mcp_local_provider.core.config import Config
from mcp_local_provider.http.middleware.errors import error_body

log = structlog.get_logger("mcp_local_provider.listen")

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class ListenError(Exception):
    """The daemon cannot listen where it was asked to; the message says why and what to do."""


class _ProtocolErrors(logging.Filter):
    """aiohttp logs malformed requests with a traceback whose text quotes the raw request
    line (query string included). Keep only the peer and the kind of error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        record.msg = "malformed or failed HTTP request from %s (%s)"
        record.args = (peer, type(exc).__name__ if exc is not None else "error")
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _protocol_logger() -> logging.Logger:
    logger = logging.getLogger("mcp_local_provider.http_protocol")
    if not any(isinstance(f, _ProtocolErrors) for f in logger.filters):
        logger.addFilter(_ProtocolErrors())
    return logger


def runner_options(config: Config) -> dict[str, Any]:
    """Options for the aiohttp runner, shared by ``serve`` and the test server.

    ``keepalive_timeout`` also bounds how long a client may take to send its request headers
    (aiohttp arms it when a connection opens); there is no access log, because a request line
    may carry secrets.
    """
    return {
        "keepalive_timeout": config.keepalive_timeout,
        "access_log": None,
        "logger": _protocol_logger(),
        "max_line_size": 8190,
        "max_field_size": 8190,
    }


def listen_hosts(config: Config) -> list[tuple[str, bool]]:
    """The addresses to bind, each with whether it may be skipped on a machine without it
    (only the extra [::1] next to 127.0.0.1; being in use is an error even there)."""
    host = config.host
    if host.lower() in ("localhost", "127.0.0.1"):
        hosts = [("127.0.0.1", False)]
        if config.ipv6_loopback:
            hosts.append(("::1", True))
        return hosts
    return [(host.strip("[]"), False)]


def _bind_error(host: str, port: int, exc: OSError) -> ListenError:
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        hint = "(is Ollama or another instance running?); choose another with --port"
        if host == "::1":
            hint += ", or set ipv6_loopback = false to listen on 127.0.0.1 only"
        return ListenError(f"{shown} is already in use {hint}")
    return ListenError(f"cannot listen on {shown}: {exc.strerror or exc}")


class ConnectionGate:
    """Counts open HTTP connections; beyond ``limit`` a connection is answered 503 and closed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            if self.open >= self.limit:
                self.refused += 1
                return _Refusal()
            self.open += 1
            return _Counted(factory(), self)

        return make


class _Counted(asyncio.Protocol):
    """Forwards everything to aiohttp's protocol and counts the connection out when it ends."""

    __slots__ = ("_gate", "_inner")

    def __init__(self, inner: asyncio.Protocol, gate: ConnectionGate) -> None:
        self._inner = inner
        self._gate = gate

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._gate.open -= 1
        self._inner.connection_lost(exc)


class _Refusal(asyncio.Protocol):
    """Reads the request line (briefly) to answer 503 in the route family's shape, then closes."""

    def __init__(self, wait: float = 1.0) -> None:
        self.wait = wait
        self.buffer = b""
        self.answered = False
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not registered as asyncio.Transport: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        self.timer = asyncio.get_running_loop().call_later(self.wait, self.answer, "/")

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return  # the rest of the request, read and dropped while lingering
        self.buffer += data
        line, found, _ = self.buffer.partition(b"\r\n")
        if found or len(self.buffer) > 8192:
            parts = line.split(b" ")
            target = parts[1].decode("latin-1") if len(parts) > 1 else "/"
            self.answer(target.partition("?")[0] if target.startswith("/") else "/")

    def answer(self, path: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        transport = self.transport
        if self.answered or transport is None or transport.is_closing():
            return
        self.answered = True
        error = errors.Overloaded("too many open connections; try again shortly")
        body = dumps(error_body(path, error)).encode()
        head = [
            "HTTP/1.1 503 Service Unavailable",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            "Retry-After: 1",
            "Connection: close",
            *(f"{name}: {value}" for name, value in SECURITY_HEADERS.items()),
        ]
        transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        # Closing with the rest of the request unread would reset the connection, and the
        # client could lose the answer with it: send the end of the answer, then go on
        # reading (and dropping) until the client closes, for ``wait`` seconds at most.
        if transport.can_write_eof():
            transport.write_eof()
            self.timer = asyncio.get_running_loop().call_later(self.wait, transport.close)
        else:
            transport.close()

    def eof_received(self) -> bool:
        if not self.answered:
            self.answer("/")
        if self.transport is not None:
            self.transport.close()  # the client has nothing more to send
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None


class _Site(web.BaseSite):
    """A TCP listener whose connections pass through the ConnectionGate.

    aiohttp has no public hook that wraps the protocol factory of a site (``TCPSite`` and
    ``SockSite`` hand ``runner.server`` to ``create_server`` themselves), so this site does
    that one step itself and relies on ``BaseSite``'s ``_runner`` and ``_server`` attributes,
    unchanged since aiohttp 3.0. The binding tests (tests/security/test_binding.py) fail if an
    upgrade changes them.
    """

    def __init__(self, runner: web.BaseRunner, host: str, port: int, gate: ConnectionGate) -> None:
        super().__init__(runner)
        self.host = host
        self.port = port
        self.gate = gate

    @property
    def name(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.gate.wrap(server),
            self.host,
            self.port,
            backlog=self._backlog,
            reuse_address=True,
        )
        sockets = self._server.sockets
        if sockets:
            self.port = sockets[0].getsockname()[1]


async def start_sites(
    runner: web.AppRunner, config: Config, gate: ConnectionGate
) -> list[web.BaseSite]:
    """Bind every address for ``config``; returns the listening sites. Raises ListenError."""
    port = config.port
    sites: list[web.BaseSite] = []
    for host, optional in listen_hosts(config):
        site = _Site(runner, host, port, gate)
        try:
            await site.start()
        except OSError as exc:
            await site.stop()
            if optional and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                log.info("ipv6_loopback_unavailable", reason=exc.strerror)
                continue
            raise _bind_error(host, port, exc) from None
        port = site.port
        sites.append(site)
    return sites
