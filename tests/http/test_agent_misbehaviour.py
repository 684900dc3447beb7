"""An agent that sends malformed answers, leaves at the wrong moment or outlives its session
never hangs a request, never causes a 500, and never reaches another session."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import Call, Timeouts
from mcp_local_provider.core.hub import Hub
from mcp_local_provider.core.protocol import Frame, Hello, ProtocolError, parse_agent_frame
from mcp_local_provider.core.registry import Registry, SessionLimits, SessionState
from mcp_local_provider.core.router import Router
from mcp_local_provider.translate.common import merge_tool_call
from tests.fakes import Daemon, RawAgent

MALFORMED = [
    {"delta": {"tool_calls": [{"index": "x", "function": {"name": "f"}}]}},
    {"delta": {"tool_calls": [{"index": -1}]}},
    {"delta": {"tool_calls": [{"index": 1_000_000_000}]}},
    {"delta": {"tool_calls": 5}},
    {"delta": {"tool_calls": [{"index": 0, "function": "zz"}]}},
    {"delta": {"content": 7}},
    {"result": {"choices": "x"}},
    {"result": {"choices": [{"message": {"content": "hi"}}], "usage": "x"}},
]


def frame(request_id: str, bad: dict[str, Any]) -> dict[str, Any]:
    if "result" in bad:
        return {"type": "model_result", "id": request_id, "status": "ok", **bad}
    return {"type": "model_stream_chunk", "id": request_id, "finish_reason": "stop", **bad}


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_answers_are_protocol_errors(bad: dict[str, Any]) -> None:
    import json

    with pytest.raises(ProtocolError, match="invalid frame"):
        parse_agent_frame(json.dumps(frame("req-1", bad)))


def test_tool_call_index_is_bounded_before_any_work() -> None:
    started = time.perf_counter()
    with pytest.raises(errors.AgentFailed):
        merge_tool_call([], {"index": 3_000_000})
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
@pytest.mark.parametrize("bad", MALFORMED[:2] + MALFORMED[-2:])
async def test_malformed_answer_is_502_and_other_sessions_keep_serving(
    echo_daemon: Daemon,
    raw_agent: Any,
    http: aiohttp.ClientSession,
    openai_client: Any,
    bad: dict[str, Any],
    path: str,
    stream: bool,
) -> None:
    agent: RawAgent = await raw_agent(echo_daemon)
    assert (await agent.hello())["type"] == "session_pending"
    assert (await agent.recv())["type"] == "session_granted"
    body = {"model": "raw", "stream": stream, "messages": [{"role": "user", "content": "x"}]}
    request = asyncio.create_task(http.post(echo_daemon.url + path, json=body))
    invoke = await agent.recv()
    await agent.send(frame(invoke["id"], bad))
    assert await agent.closed() == 4400
    response = await asyncio.wait_for(request, 5)
    assert response.status == 502
    assert "agent" in (await response.text())
    response.release()
    reply = await openai_client(echo_daemon).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "unharmed"}]
    )
    assert reply.choices[0].message.content == "unharmed"


class FailingLink:
    """A socket that dies after the pending frame: the granted frame cannot be sent."""

    def __init__(self) -> None:
        self.sent: list[Frame] = []

    async def send(self, frame: Frame) -> None:
        if frame.type == "session_granted":
            raise ConnectionError("agent hung up")
        self.sent.append(frame)

    async def close(self, code: int, reason: str) -> None:
        pass


def core(clock: Any = time.time) -> tuple[Registry, Router, Hub]:
    registry = Registry(SessionLimits(("inference",), 60, 60, 100, 2), clock)
    router = Router(registry, Timeouts(1.0, 1.0, 5.0, 0.01))
    return registry, router, Hub(registry, router, approval="manual", approval_timeout=5)


async def test_approval_racing_a_hang_up_leaves_no_connected_ghost() -> None:
    registry, _, hub = core()
    hello = Hello(type="hello", agent_id="a", models=["m"])
    admission = asyncio.create_task(hub.admit(hello, FailingLink()))
    await asyncio.sleep(0)
    [session] = list(registry)
    hub.approve(session.id)
    with pytest.raises(ConnectionError):
        await admission
    assert session.state is SessionState.ACTIVE and not session.connected


async def test_hang_up_cancelling_admission_after_approval_detaches() -> None:
    registry, _, hub = core()

    class Link(FailingLink):
        async def send(self, frame: Frame) -> None:
            self.sent.append(frame)

    hello = Hello(type="hello", agent_id="a", models=["m"])
    admission = asyncio.create_task(hub.admit(hello, Link()))
    await asyncio.sleep(0)
    [session] = list(registry)
    hub.approve(session.id)
    admission.cancel()  # the socket handler cancels admission when the agent hangs up
    with pytest.raises(asyncio.CancelledError):
        await admission
    assert not session.connected


async def test_a_session_past_its_expiry_gets_no_calls_before_the_sweep() -> None:
    now = [1000.0]
    registry, router, _ = core(lambda: now[0])
    session, _ = registry.register(
        agent_id="a",
        label="",
        models=[],
        scopes=["inference"],
        ttl_seconds=10,
        max_concurrency=None,
    )
    session.link = FailingLink()
    now[0] += 11
    with pytest.raises(errors.NoActiveSession):
        async with router.open(Call(kind="chat", model="m", payload={})):
            pass
