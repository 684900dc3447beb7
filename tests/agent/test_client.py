"""The agent SDK (AgentClient) against a real daemon: approval, reconnect-and-resume, cancel,
concurrency and the end of a session."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest

from mcp_local_provider.agent import (
    AgentClient,
    AgentRefused,
    Backend,
    BackendError,
    BackendEvent,
    Finish,
    InvokeRequest,
    TextDelta,
)
from mcp_local_provider.core.protocol import ModelSpec
from mcp_local_provider.core.registry import SessionState
from tests.conftest import StartDaemon
from tests.fakes import Daemon, until

HI = [{"role": "user", "content": "hi"}]


class GatedBackend(Backend):
    """Sends "working", then waits for ``gate``; records concurrency and clean-ups."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.active = 0
        self.peak = 0
        self.closed = 0

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(name="gated")]

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            yield TextDelta("working")
            await self.gate.wait()
            yield TextDelta(" done")
            yield Finish("stop")
        finally:
            self.active -= 1
            self.closed += 1


class FailingBackend(Backend):
    name = "failing"

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(name="failing")]

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        raise BackendError("the CLI is not signed in", "backend_unavailable")
        yield TextDelta("")  # pragma: no cover - makes this a generator


def pending_sessions(daemon: Daemon) -> list[Any]:
    return daemon.state.registry.in_state(SessionState.PENDING)


async def approved_agent(
    daemon: Daemon, backend: Backend | None = None, **options: Any
) -> tuple[AgentClient, asyncio.Task[str], list[dict[str, Any]]]:
    """An agent on a manual-approval daemon, approved once by the user."""
    asked: list[dict[str, Any]] = []
    client, task = await daemon.start_agent(backend, wait=False, on_pending=asked.append, **options)
    await until(lambda: bool(pending_sessions(daemon)))
    daemon.state.hub.approve(pending_sessions(daemon)[0].id)
    await client.wait_ready()
    return client, task, asked


async def drop_connections(daemon: Daemon) -> None:
    """Close every agent socket from the daemon's side as a network failure would."""
    for ws in list(daemon.state.sockets):
        await ws.close(code=1011, message=b"network trouble")


async def test_a_dropped_connection_resumes_the_session_without_a_second_approval(
    start_daemon: StartDaemon, openai_client: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    client, _, asked = await approved_agent(daemon)
    session_id = client.session_id
    await drop_connections(daemon)
    await until(lambda: client.connections == 2 and daemon.state.registry.get(session_id).connected)
    assert client.session_id == session_id
    assert len(asked) == 1  # the user was asked once
    assert len(daemon.state.registry) == 1
    reply = await openai_client(daemon).chat.completions.create(model="echo", messages=HI)
    assert reply.choices[0].message.content == "hi"


async def test_a_session_the_daemon_forgot_is_asked_for_again(start_daemon: StartDaemon) -> None:
    daemon = await start_daemon(approval="manual")
    client, _, asked = await approved_agent(daemon)
    first = client.session_id
    assert first is not None
    daemon.state.registry.end(first, SessionState.REVOKED, "lost in a restart")
    await drop_connections(daemon)
    await until(lambda: bool(pending_sessions(daemon)))
    daemon.state.hub.approve(pending_sessions(daemon)[0].id)
    await until(lambda: client.session_id != first and client.granted is not None
                and client.granted["session_id"] == client.session_id)  # fmt: skip
    assert len(asked) == 2


async def test_a_cancelled_request_cancels_its_task_and_closes_the_backend(
    daemon: Daemon, openai_client: Any
) -> None:
    backend = GatedBackend()
    client, _ = await daemon.start_agent(backend)
    stream = await openai_client(daemon).chat.completions.create(
        model="gated", messages=HI, stream=True
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    await stream.close()  # the editor goes away
    await until(lambda: backend.closed == 1 and client.cancelled == 1)
    assert backend.active == 0
    assert client.in_flight == 0


async def test_requests_are_served_concurrently_up_to_max_concurrency(
    daemon: Daemon, openai_client: Any
) -> None:
    backend = GatedBackend()
    await daemon.start_agent(backend, max_concurrency=2)
    api = openai_client(daemon)
    asks = [
        asyncio.create_task(api.chat.completions.create(model="gated", messages=HI))
        for _ in range(3)
    ]
    await until(lambda: backend.active == 2)
    await asyncio.sleep(0.05)
    assert backend.active == 2  # the third waits for a free slot
    backend.gate.set()
    replies = await asyncio.gather(*asks)
    assert [r.choices[0].message.content for r in replies] == ["working done"] * 3
    assert backend.peak == 2


async def test_a_revoked_session_stops_the_client_and_its_requests(
    daemon: Daemon, openai_client: Any
) -> None:
    backend = GatedBackend()
    client, task = await daemon.start_agent(backend)
    ask = asyncio.create_task(
        openai_client(daemon).chat.completions.create(model="gated", messages=HI)
    )
    await until(lambda: backend.active == 1)
    assert client.session_id is not None
    await daemon.state.hub.revoke(client.session_id)
    assert await asyncio.wait_for(task, 5) == "revoked"
    assert backend.closed == 1
    with pytest.raises(openai.APIStatusError):
        await ask
    assert client.session_token is None


async def test_stop_while_waiting_to_reconnect_returns_at_once(daemon: Daemon) -> None:
    client, task = await daemon.start_agent(backoff_initial=30)
    await drop_connections(daemon)
    await until(lambda: not client._ready.is_set())
    began = time.monotonic()
    await client.stop()
    assert await asyncio.wait_for(task, 2) == "stopped"
    assert time.monotonic() - began < 1


async def test_a_backend_error_reaches_the_editor(daemon: Daemon, openai_client: Any) -> None:
    await daemon.start_agent(FailingBackend())
    with pytest.raises(openai.APIStatusError) as raised:
        await openai_client(daemon).chat.completions.create(model="failing", messages=HI)
    assert raised.value.status_code == 502
    assert "the CLI is not signed in" in str(raised.value.message)


async def test_a_wrong_bridge_token_is_refused(daemon: Daemon) -> None:
    daemon.token = "wrong-token"
    client, task = await daemon.start_agent(wait=False)
    with pytest.raises(AgentRefused, match="check the bridge token"):
        await asyncio.wait_for(task, 5)
    assert client.connections == 0


async def test_an_unreachable_daemon_fails_fast_the_first_time() -> None:
    client = AgentClient("ws://127.0.0.1:9/agent", "token", GatedBackend())
    with pytest.raises(AgentRefused, match="cannot reach the daemon"):
        await asyncio.wait_for(client.run(), 5)
