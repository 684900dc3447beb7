"""AgentClient: dial the daemon, get approved, and serve requests with a Backend."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import aiohttp
import structlog

from mcp_local_provider.agent.backend import Backend
from mcp_local_provider.agent.serving import RequestRunner
from mcp_local_provider.core.addresses import unreachable
from mcp_local_provider.core.protocol import (
    CloseCode,
    Hello,
    ModelCancel,
    ModelInvoke,
    ProtocolError,
    SessionDenied,
    SessionEnded,
    SessionGranted,
    SessionPending,
    WarmStatus,
    agent_status_frame,
    encode,
    hello_frame,
    parse_daemon_frame,
)

log = structlog.get_logger("mcp_local_provider.agent")

#: Seconds between looks at the backend's processes started ahead (a change is reported).
STATUS_INTERVAL = 1.0

_ENDED_BY_CODE = {
    CloseCode.REVOKED: "revoked",
    CloseCode.EXPIRED: "expired",
    CloseCode.GOING_AWAY: "shutdown",
}


class AgentRefused(Exception):
    """The daemon will not let this agent serve (bad bridge or session token, or denied)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class _Dropped(Exception):
    """The connection went away without the session ending."""


class _SessionLost(Exception):
    """The daemon no longer knows the session this agent tried to resume (it restarted)."""


class AgentClient:
    """One agent: connects, waits for approval, serves until its session ends.

    ``run()`` returns the reason the session ended (``revoked``, ``expired``, ``shutdown``,
    ``stopped``) and raises AgentRefused if access was refused.

    Requests are served concurrently, at most ``max_concurrency`` at once (or fewer if the
    daemon granted fewer); a ``model_cancel`` cancels the request's task, which closes the
    backend's event stream. After a dropped connection the client reconnects with backoff and
    its session token, so no second approval is needed; if the daemon no longer knows the
    session (it restarted), the client asks for a new one.
    """

    def __init__(
        self,
        url: str,
        bridge_token: str,
        backend: Backend,
        *,
        agent_id: str = "agent",
        label: str = "",
        scopes: tuple[str, ...] = ("inference",),
        ttl_seconds: float | None = None,
        max_concurrency: int = 4,
        reason: str = "",
        session_token: str | None = None,
        reconnect: bool = True,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        heartbeat: float = 15.0,
        status_interval: float = STATUS_INTERVAL,
        on_pending: Callable[[dict[str, Any]], None] | None = None,
        on_granted: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.url = url
        self.bridge_token = bridge_token
        self.backend = backend
        self.agent_id = agent_id
        self.label = label
        self.scopes = scopes
        self.ttl_seconds = ttl_seconds
        self.max_concurrency = max_concurrency
        self.reason = reason
        self.session_token = session_token
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.heartbeat = heartbeat
        self.status_interval = status_interval
        self.on_pending = on_pending
        self.on_granted = on_granted
        self.session_id: str | None = None
        self.granted: dict[str, Any] | None = None
        self.connections = 0
        self._requests = RequestRunner(backend, max_concurrency)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._resumed_by_us = False
        self._granted_this_connection = False

    # -- public ------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        """Requests being served right now."""
        return self._requests.in_flight

    @property
    def served(self) -> int:
        """Requests answered (a finish or an error sent)."""
        return self._requests.served

    @property
    def cancelled(self) -> int:
        """Requests cancelled before they were answered."""
        return self._requests.cancelled

    async def run(self) -> str:
        await self.backend.start()
        attempt = 0
        async with aiohttp.ClientSession() as http:
            while not self._stopping.is_set():
                try:
                    return await self._connect_once(http)
                except _SessionLost:
                    log.warning("agent_session_lost", session_id=self.session_id)
                    self.session_token = None
                    self._resumed_by_us = False
                    attempt = 0
                    continue
                except _Dropped as exc:
                    if self._stopping.is_set():
                        break
                    if not self.reconnect:
                        raise AgentRefused(f"connection to the daemon lost: {exc}") from None
                except (aiohttp.ClientConnectionError, OSError) as exc:
                    if self._stopping.is_set():
                        break
                    if not (self.reconnect and self.connections):
                        raise AgentRefused(unreachable(self.url, exc)) from None
                finally:
                    self._ready.clear()
                if self._granted_this_connection:
                    # It was serving: start the backoff afresh, once. Failed dials that follow
                    # must grow the delay, or a dead daemon is dialled every few tenths of a
                    # second for as long as it is down.
                    self._granted_this_connection = False
                    attempt = 0
                delay = min(self.backoff_max, self.backoff_initial * 2**attempt)
                attempt += 1
                delay *= 0.5 + random.random() / 2
                log.info("agent_reconnecting", in_seconds=round(delay, 2))
                with suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stopping.wait()
        return "stopped"

    async def wait_ready(self) -> None:
        """Wait until the session is granted and the agent is serving."""
        await self._ready.wait()

    async def stop(self) -> None:
        """Stop serving: requests in flight are cancelled and ``run`` returns ``stopped``.

        The daemon is told goodbye (close code 1001), so the session ends at once instead of
        waiting for this agent to come back until it expires."""
        self._stopping.set()
        if self._ws is not None:
            await _goodbye(self._ws)

    # -- one connection ----------------------------------------------------------------------

    def _hello(self) -> Hello:
        return hello_frame(
            agent_id=self.agent_id,
            label=self.label,
            models=[m.model_dump(exclude_none=True) for m in self.backend.models()],
            requested_scopes=list(self.scopes),
            ttl_seconds=self.ttl_seconds,
            max_concurrency=self.max_concurrency,
            reason=self.reason,
            session_token=self.session_token,
        )

    async def _connect_once(self, http: aiohttp.ClientSession) -> str:
        headers = {"Authorization": f"Bearer {self.bridge_token}"}
        try:
            ws = await http.ws_connect(
                self.url, headers=headers, heartbeat=self.heartbeat, autoping=True
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403):
                raise AgentRefused(
                    f"the daemon refused the connection ({exc.status}): check the bridge token",
                    exc.status,
                ) from None
            raise
        self._ws = ws
        self.connections += 1
        self._granted_this_connection = False
        resuming = self.session_token is not None
        ended: str | None = None
        reporting: asyncio.Task[None] | None = None
        try:
            if self._stopping.is_set():
                return "stopped"
            await ws.send_str(encode(self._hello()))
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    frame = parse_daemon_frame(msg.data)
                except ProtocolError as exc:
                    log.warning("agent_bad_frame", error=str(exc), data=str(msg.data)[:200])
                    continue
                if isinstance(frame, ModelInvoke):
                    self._requests.start(ws, frame)
                elif isinstance(frame, ModelCancel):
                    self._requests.cancel(frame.id)
                elif isinstance(frame, SessionPending):
                    self.session_id = frame.session_id
                    log.info("agent_pending", session_id=self.session_id)
                    if self.on_pending is not None:
                        self.on_pending(frame.model_dump())
                elif isinstance(frame, SessionGranted):
                    self._granted(frame)
                    if (
                        reporting is None
                        and "agent_status" in frame.accepts
                        and self.backend.pool_status() is not None  # else nothing to report
                    ):
                        reporting = asyncio.create_task(self._report_status(ws))
                elif isinstance(frame, SessionDenied):
                    raise AgentRefused(f"access denied: {frame.reason}", CloseCode.DENIED)
                elif isinstance(frame, SessionEnded):
                    ended = frame.reason or "ended"
                    self.session_token = None
                else:
                    log.warning("agent_daemon_error", message=frame.message)
        finally:
            self._ws = None
            if reporting is not None:
                reporting.cancel()
            await self._requests.cancel_all()
            if not ws.closed:
                # The daemon did not close this connection: the agent is leaving on purpose
                # (stopped, cancelled, interrupted, refused), so it says goodbye.
                await _goodbye(ws)
        return self._outcome(ws.close_code, ended, resuming)

    async def _report_status(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Tell the daemon how the backend's processes started ahead stand, whenever that
        changes (looked at every ``status_interval``), for its status view."""
        last: WarmStatus | None = None
        while not ws.closed:
            now = self.backend.pool_status()
            if now is not None and now != last:
                try:
                    await ws.send_str(encode(agent_status_frame(now)))
                except (ConnectionError, RuntimeError):
                    return
                last = now
            await asyncio.sleep(self.status_interval)

    def _granted(self, frame: SessionGranted) -> None:
        self.session_id = frame.session_id
        self.session_token = frame.session_token or self.session_token
        self.granted = details = frame.model_dump()
        granted = frame.max_concurrency
        limit = min(self.max_concurrency, granted) if granted is not None else self.max_concurrency
        self._requests.limit(limit)
        self._resumed_by_us = True
        self._granted_this_connection = True
        self._ready.set()
        log.info("agent_granted", session_id=self.session_id, connection=self.connections)
        if self.on_granted is not None:
            self.on_granted(details)

    def _outcome(self, code: int | None, ended: str | None, resuming: bool) -> str:
        if ended is not None:
            return ended
        if self._stopping.is_set():
            return "stopped"
        if code in _ENDED_BY_CODE:
            self.session_token = None
            return _ENDED_BY_CODE[CloseCode(code)]
        if code == CloseCode.UNAUTHORIZED:
            if resuming and self._resumed_by_us and self.reconnect:
                raise _SessionLost()
            self.session_token = None
            raise AgentRefused("the daemon did not accept the session token", code)
        if code == CloseCode.DENIED:
            raise AgentRefused("access denied", code)
        if code == CloseCode.PROTOCOL_ERROR:
            raise AgentRefused("the daemon reported a protocol error", code)
        raise _Dropped(f"closed with code {code}")


async def _goodbye(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Close with 1001 (going away): the daemon ends the session rather than keep it for a
    reconnect (see docs/agent-protocol.md)."""
    await ws.close(code=CloseCode.GOING_AWAY, message=b"agent leaving")
