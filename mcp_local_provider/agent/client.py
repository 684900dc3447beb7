"""AgentClient: dial the daemon, get approved, and serve requests with a Backend."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import aiohttp
import structlog

from ..protocol import PROTOCOL_VERSION, CloseCode
from ..translate.common import dumps
from .backend import Backend, BackendError
from .events import (
    Embeddings,
    Finish,
    InvokeRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)

log = structlog.get_logger("mcp_local_provider.agent")

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


class AgentClient:
    """One agent: connects, waits for approval, serves until its session ends.

    ``run()`` returns the reason the session ended (``revoked``, ``expired``, ``shutdown``,
    ``stopped``) and raises AgentRefused if access was refused.
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
        self.on_pending = on_pending
        self.on_granted = on_granted
        self.session_id: str | None = None
        self.granted: dict[str, Any] | None = None
        self.connections = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._stopping = False
        self._ready = asyncio.Event()

    # -- public ------------------------------------------------------------------------------

    async def run(self) -> str:
        attempt = 0
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    return await self._connect_once(http)
                except _Dropped as exc:
                    if self._stopping:
                        return "stopped"
                    if not (self.reconnect and self.session_token):
                        raise AgentRefused(f"connection to the daemon lost: {exc}") from None
                except (aiohttp.ClientConnectionError, OSError) as exc:
                    if self._stopping:
                        return "stopped"
                    if not (self.reconnect and self.session_token):
                        raise AgentRefused(
                            f"cannot reach the daemon at {self.url}: {exc}"
                        ) from None
                finally:
                    self._ready.clear()
                delay = min(self.backoff_max, self.backoff_initial * 2**attempt)
                attempt += 1
                delay *= 0.5 + random.random() / 2
                log.info("agent_reconnecting", in_seconds=round(delay, 2))
                await asyncio.sleep(delay)

    async def wait_ready(self) -> None:
        """Wait until the session is granted and the agent is serving."""
        await self._ready.wait()

    async def stop(self) -> None:
        self._stopping = True
        if self._ws is not None:
            await self._ws.close()

    # -- one connection ----------------------------------------------------------------------

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "agent_id": self.agent_id,
            "label": self.label,
            "models": [m.model_dump(exclude_none=True) for m in self.backend.models()],
            "requested_scopes": list(self.scopes),
            "ttl_seconds": self.ttl_seconds,
            "max_concurrency": self.max_concurrency,
            "reason": self.reason,
            "session_token": self.session_token,
        }

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
        ended: str | None = None
        try:
            await ws.send_str(dumps(self._hello()))
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                kind = frame.get("type")
                if kind == "model_invoke":
                    self._start(ws, frame)
                elif kind == "model_cancel":
                    task = self._tasks.get(str(frame.get("id")))
                    if task is not None:
                        task.cancel()
                elif kind == "session_pending":
                    self.session_id = frame.get("session_id")
                    log.info("agent_pending", **frame)
                    if self.on_pending is not None:
                        self.on_pending(frame)
                elif kind == "session_granted":
                    self.session_id = frame.get("session_id")
                    self.session_token = frame.get("session_token") or self.session_token
                    self.granted = frame
                    self._ready.set()
                    log.info("agent_granted", session_id=self.session_id)
                    if self.on_granted is not None:
                        self.on_granted(frame)
                elif kind == "session_denied":
                    raise AgentRefused(f"access denied: {frame.get('reason')}", CloseCode.DENIED)
                elif kind == "session_ended":
                    ended = str(frame.get("reason") or "ended")
                    self.session_token = None
        finally:
            self._ws = None
            await self._cancel_all()
            if not ws.closed:
                await ws.close()
        code = ws.close_code
        if ended is not None:
            return ended
        if self._stopping:
            return "stopped"
        if code in _ENDED_BY_CODE:
            self.session_token = None
            return _ENDED_BY_CODE[CloseCode(code)]
        if code == CloseCode.UNAUTHORIZED:
            self.session_token = None
            raise AgentRefused("the daemon did not accept the session token", code)
        if code == CloseCode.DENIED:
            raise AgentRefused("access denied", code)
        if code == CloseCode.PROTOCOL_ERROR:
            raise AgentRefused("the daemon reported a protocol error", code)
        raise _Dropped(f"closed with code {code}")

    # -- requests ----------------------------------------------------------------------------

    def _start(self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]) -> None:
        request = InvokeRequest.from_invoke(frame)
        task = asyncio.create_task(self._handle(ws, request))
        self._tasks[request.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(request.id, None))

    async def _cancel_all(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError, Exception):
                await task

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, request: InvokeRequest) -> None:
        rid = request.id
        index = 0

        async def chunk(
            delta: dict[str, Any], finish: str | None = None, usage: Any = None
        ) -> None:
            nonlocal index
            frame: dict[str, Any] = {
                "type": "model_stream_chunk",
                "id": rid,
                "chunk_index": index,
                "delta": delta,
                "finish_reason": finish,
            }
            if usage is not None:
                frame["usage"] = usage
            index += 1
            await ws.send_str(dumps(frame))

        try:
            finished = False
            async for event in self.backend.run(request):
                if isinstance(event, TextDelta):
                    if event.text:
                        await chunk({"content": event.text})
                elif isinstance(event, ReasoningDelta):
                    await chunk({"reasoning_content": event.text})
                elif isinstance(event, ToolCallDelta):
                    call: dict[str, Any] = {"index": event.index}
                    function: dict[str, Any] = {"arguments": event.arguments}
                    if event.id is not None:
                        call["id"] = event.id
                        call["type"] = "function"
                    if event.name is not None:
                        function["name"] = event.name
                    call["function"] = function
                    await chunk({"tool_calls": [call]})
                elif isinstance(event, Finish):
                    await chunk({}, event.reason, event.usage)
                    finished = True
                    break
                elif isinstance(event, Embeddings):
                    data = [
                        {"object": "embedding", "index": i, "embedding": v}
                        for i, v in enumerate(event.vectors)
                    ]
                    result = {"data": data, "usage": event.usage}
                    await ws.send_str(
                        dumps({"type": "model_result", "id": rid, "status": "ok", "result": result})
                    )
                    finished = True
                    break
            if not finished:
                await chunk({}, "stop")
        except asyncio.CancelledError:
            raise
        except (ConnectionError, RuntimeError) as exc:
            if ws.closed:
                return
            await self._send_error(ws, rid, "backend_error", str(exc))
        except BackendError as exc:
            await self._send_error(ws, rid, exc.code, exc.message)
        except Exception as exc:
            log.exception("backend_failed", request_id=rid)
            await self._send_error(ws, rid, "backend_error", f"{type(exc).__name__}: {exc}")

    async def _send_error(
        self, ws: aiohttp.ClientWebSocketResponse, rid: str, code: str, message: str
    ) -> None:
        frame = {
            "type": "model_result",
            "id": rid,
            "status": "error",
            "error": {"code": code, "message": message},
        }
        with suppress(ConnectionError, RuntimeError):
            await ws.send_str(dumps(frame))
