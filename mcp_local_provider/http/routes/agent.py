"""``GET /agent``: the WebSocket agents dial into (protocol v1, see docs/agent-protocol.md).

Only this handler reads its socket. Other tasks write to it through ``SocketLink``.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from mcp_local_provider.core import errors
from mcp_local_provider.core.hub import AdmissionRefused
from mcp_local_provider.core.protocol import (
    AgentStatus,
    CloseCode,
    Frame,
    Hello,
    ProtocolError,
    encode,
    error_frame,
    parse_agent_frame,
)
from mcp_local_provider.core.registry import Session, SessionState
from mcp_local_provider.http.auth import bearer, require_bridge_token
from mcp_local_provider.http.state import STATE, State
from mcp_local_provider.policy.tokens import fingerprint

routes = web.RouteTableDef()
log = structlog.get_logger("mcp_local_provider.agent_socket")

_GONE = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


class SocketLink:
    """The daemon's side of one agent connection."""

    __slots__ = ("closed_with", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        #: The close code the daemon sent, if it closed first (for metrics).
        self.closed_with: int | None = None

    async def send(self, frame: Frame) -> None:
        if self.ws.closed:
            raise ConnectionError("agent connection is closed")
        await self.ws.send_str(encode(frame))

    async def close(self, code: int, reason: str) -> None:
        if self.closed_with is None and not self.ws.closed:
            self.closed_with = code
        await self.ws.close(code=code, message=reason.encode()[:120])


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@routes.get("/agent")
async def agent_socket(request: web.Request) -> web.WebSocketResponse:
    state = request.app[STATE]
    security = request.app[STATE].security
    require_bridge_token(request)
    if not security.audit.healthy:
        raise errors.AuditUnavailable("the audit log cannot be written; agents are refused")
    # Until it is granted a session, an agent holds one of the few handshake slots.
    slot = fingerprint(bearer(request) or "")
    if not security.handshakes.acquire(slot):
        raise errors.RateLimited(
            "too many agents are waiting for approval; approve or deny them first",
            retry_after=state.config.approval_timeout,
        )
    ws = web.WebSocketResponse(
        heartbeat=state.config.heartbeat,
        max_msg_size=state.config.max_frame_bytes,
        compress=False,
        timeout=2.0,  # how long a close waits for the agent's answer
    )
    link = SocketLink(ws)
    session: Session | None = None
    try:
        try:
            await ws.prepare(request)
            state.sockets.add(ws)
            hello = await _read_hello(ws, state)
            session, leftover = await _admit(ws, state, hello, link)
        finally:
            security.handshakes.release(slot)
        await _serve(ws, state, session, leftover)
    except _Refused as refused:
        log.info("agent_refused", code=refused.code, reason=refused.reason)
        with suppress(ConnectionError, RuntimeError):
            await link.close(refused.code, refused.reason)
    finally:
        if session is not None:
            if link.closed_with is None and ws.close_code == CloseCode.GOING_AWAY:
                await state.hub.leave(session, link)  # the agent said goodbye
            state.hub.detach(session, link)
            state.hub.emit("closed", session, code=link.closed_with or ws.close_code)
        state.metrics.agent_connection_closed(link.closed_with or ws.close_code)
    return ws


async def _read_hello(ws: web.WebSocketResponse, state: State) -> Hello:
    try:
        async with asyncio.timeout(state.config.hello_timeout):
            msg = await ws.receive()
    except TimeoutError:
        raise _Refused(CloseCode.UNAUTHORIZED, "hello not received in time") from None
    if msg.type in _GONE:
        raise _Refused(CloseCode.NORMAL, "closed before hello")
    frame = _parse(msg)
    if not isinstance(frame, Hello):
        raise _Refused(CloseCode.UNAUTHORIZED, "the first frame must be hello")
    return frame


def _parse(msg: Any) -> Any:
    if msg.type is not WSMsgType.TEXT:
        raise _Refused(CloseCode.PROTOCOL_ERROR, "frames must be JSON text frames")
    try:
        return parse_agent_frame(msg.data)
    except ProtocolError as exc:
        raise _Refused(CloseCode.PROTOCOL_ERROR, str(exc)) from None


async def _admit(
    ws: web.WebSocketResponse, state: State, hello: Hello, link: SocketLink
) -> tuple[Session, asyncio.Task[Any] | None]:
    """Wait for the hub's decision while still watching the socket for a hang-up.

    Returns the session and the read that was in progress (the serve loop picks it up, so no
    read is ever abandoned half-way).
    """
    admission = asyncio.create_task(state.hub.admit(hello, link))
    reading: asyncio.Task[Any] | None = None
    strikes = 0
    try:
        while not admission.done():
            if reading is None:
                reading = asyncio.create_task(ws.receive())
            await asyncio.wait({admission, reading}, return_when=asyncio.FIRST_COMPLETED)
            if reading.done() and not admission.done():
                msg = reading.result()
                if msg.type in _GONE:
                    raise _Refused(CloseCode.NORMAL, "agent left before approval")
                # Not processed: an error frame the first time, then the connection ends.
                strikes += 1
                if strikes > 1:
                    raise _Refused(
                        CloseCode.PROTOCOL_ERROR, "frames sent before the session was granted"
                    )
                reading = None
                with suppress(ConnectionError, RuntimeError):
                    await link.send(error_frame("the session is pending: frames are not processed"))
        try:
            session = admission.result()
        except AdmissionRefused as refused:
            raise _Refused(refused.code, refused.reason) from None
        except (ConnectionError, RuntimeError):
            raise _Refused(CloseCode.NORMAL, "agent connection lost during admission") from None
        return session, reading
    except BaseException:
        admission.cancel()
        with suppress(BaseException):
            await admission
        if reading is not None and not reading.done():
            reading.cancel()
        raise


async def _serve(
    ws: web.WebSocketResponse,
    state: State,
    session: Session,
    leftover: asyncio.Task[Any] | None,
) -> None:
    router = state.router
    structlog.contextvars.bind_contextvars(session_id=session.id)
    log.info("agent_connected", session_id=session.id, agent_id=session.agent_id)
    strikes = 0
    while True:
        if leftover is not None:
            msg, leftover = await leftover, None
        else:
            msg = await ws.receive()
        if msg.type in _GONE:
            if msg.type is WSMsgType.ERROR:
                log.info("agent_socket_error", session_id=session.id, error=str(ws.exception()))
            return
        frame = _parse(msg)
        if isinstance(frame, Hello):
            raise _Refused(CloseCode.PROTOCOL_ERROR, "hello sent twice")
        if session.state is not SessionState.ACTIVE:
            # Revoked or expired, and not yet closed: not processed.
            strikes += 1
            if strikes > 1:
                raise _Refused(CloseCode.PROTOCOL_ERROR, "frames sent after the session ended")
            with suppress(ConnectionError, RuntimeError):
                await SocketLink(ws).send(
                    error_frame(f"the session is {session.state.value}: frames are not processed")
                )
            continue
        if isinstance(frame, AgentStatus):
            session.warm = frame.warm
            continue
        router.deliver(session, frame, len(msg.data))
