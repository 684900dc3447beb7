"""The request carrying a tool call's result goes back to the session that made the call
(core/held.py), where the agent may hold the turn open for it; the router without sockets."""

from __future__ import annotations

from typing import Any

from mcp_local_provider.core.call import Call
from mcp_local_provider.core.held import ToolCallOwners
from mcp_local_provider.core.protocol import ModelStreamChunk
from mcp_local_provider.core.registry import Session
from mcp_local_provider.core.router import Router
from tests.core.test_router import active, make

QUESTION = {"role": "user", "content": "Weather in Tokyo?"}


def tool_call(rid: str, call_id: str) -> ModelStreamChunk:
    delta: Any = {"tool_calls": [{"index": 0, "id": call_id, "function": {"name": "w"}}]}
    return ModelStreamChunk(
        type="model_stream_chunk", id=rid, delta=delta, finish_reason="tool_calls"
    )


def chat(*messages: dict[str, Any]) -> Call:
    payload: Any = {"kind": "chat", "model": "m", "messages": list(messages)}
    return Call(kind="chat", model="m", payload=payload)


def answered(call_id: str, system: str = "You help.") -> Call:
    assistant = {"role": "assistant", "tool_calls": [{"id": call_id, "type": "function"}]}
    result = {"role": "tool", "tool_call_id": call_id, "content": "sunny"}
    return chat({"role": "system", "content": system}, QUESTION, assistant, result)


async def served_by(router: Router, call: Call, sessions: list[Session], answer: Any) -> Session:
    async with router.open(call) as events:
        (session,) = [s for s in sessions if s.in_flight]
        router.deliver(session, answer(call.request_id))
        [frame async for frame in events]
    return session


async def test_the_tool_result_goes_to_the_session_that_made_the_call() -> None:
    registry, router = make()
    a, _ = active(registry)
    b, _ = active(registry)
    first = chat({"role": "system", "content": "You help."}, QUESTION)
    maker = await served_by(router, first, [a, b], lambda rid: tool_call(rid, "call_x1"))
    other = b if maker is a else a
    # The editor rewrote its system prompt (so the conversation looks new to the affinity)
    # and the other session has served fewer requests: by policy it would get the result.
    assert other.requests < maker.requests
    nxt = answered("call_x1", system="You help. Open files: a.py")
    got = await served_by(router, nxt, [a, b], lambda rid: tool_call(rid, "call_x2"))
    assert got is maker
    # A result of calls nobody here made is routed by policy.
    unknown = answered("call_nobody", system="Another editor.")
    assert await served_by(router, unknown, [a, b], lambda rid: tool_call(rid, "c3")) is other


async def test_a_result_whose_session_is_busy_is_routed_normally() -> None:
    registry, router = make()
    a, _ = active(registry, max_concurrency=1)
    b, _ = active(registry, max_concurrency=1)
    first = chat(QUESTION)
    maker = await served_by(router, first, [a, b], lambda rid: tool_call(rid, "call_y"))
    maker.in_flight += 1  # busy with something else
    other = b if maker is a else a
    got = await served_by(router, answered("call_y"), [other], lambda rid: tool_call(rid, "z"))
    assert got is other


def test_the_table_forgets_the_oldest_calls_past_its_size() -> None:
    owners = ToolCallOwners(size=2)
    for n in range(3):
        owners.relayed(f"s{n}", tool_call("r", f"call_{n}"))
    assert len(owners) == 2
    assert owners.owner(answered("call_0").payload) is None
    assert owners.owner(answered("call_2").payload) == "s2"
