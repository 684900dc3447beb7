"""Sessions: tokens are random and kept as digests, a session id never authenticates, frames
from a session that is not active are not processed, and results never reach another request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from mcp_local_provider.core.registry import Registry, SessionLimits, SessionState, hash_token
from tests.fakes import Daemon, until
from tests.security.helpers import chat_body, granted_raw_agent

JSON = {"Content-Type": "application/json"}


def test_tokens_are_random_and_stored_only_as_sha256() -> None:
    registry = Registry(SessionLimits(("inference",), 60, 60, 10, 2))
    first = registry.create_pending(
        agent_id="a", label="", models=[], scopes=["inference"], ttl_seconds=None,
        max_concurrency=None,
    )  # fmt: skip
    session, token = registry.approve(first.id)
    _, other = registry.register(
        agent_id="b", label="", models=[], scopes=["inference"], ttl_seconds=None,
        max_concurrency=None,
    )  # fmt: skip
    assert token != other and len(token) >= 40 and session.id not in token
    assert session.token_hash == hash_token(token)
    held = repr(vars(session)) + repr(vars(registry))
    assert token not in held and other not in held
    assert registry.claim(token) is session


async def test_frames_from_a_pending_session_get_an_error_then_4400(
    start_daemon: Any, raw_agent: Any
) -> None:
    daemon = await start_daemon(approval="manual")
    agent = await raw_agent(daemon)
    assert (await agent.hello())["type"] == "session_pending"
    result = {"type": "model_result", "id": "req-0", "status": "ok", "result": {}}
    await agent.send(result)
    error = await agent.recv()
    assert error["type"] == "error" and "pending" in error["message"]
    await agent.send(result)
    assert await agent.closed() == 4400
    assert daemon.state.router.dropped_frames == 0  # never even reached the router


async def test_frames_from_a_revoked_session_get_an_error_then_4400(
    daemon: Daemon, raw_agent: Any
) -> None:
    agent = await raw_agent(daemon)
    granted = await granted_raw_agent(agent)
    # The moment between a session ending and its socket closing.
    daemon.state.registry.end(granted["session_id"], SessionState.REVOKED, "revoked")
    chunk = {"type": "model_stream_chunk", "id": "req-1", "delta": {"content": "x"}}
    await agent.send(chunk)
    error = await agent.recv()
    assert error == {"type": "error", "message": "the session is revoked: frames are not processed"}
    await agent.send(chunk)
    assert await agent.closed() == 4400


async def test_results_for_unknown_ids_are_dropped_and_counted(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    for rid in ("req-unknown", "req-other"):
        await agent.send({"type": "model_result", "id": rid, "status": "ok", "result": {}})
    await until(lambda: daemon.state.router.dropped_frames == 2)
    async with http.get(daemon.url + "/health/deep") as response:
        assert (await response.json())["components"]["router"]["dropped_frames"] == 2


async def test_a_result_from_another_session_never_reaches_the_request(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    serving = await raw_agent(daemon)
    granted = await granted_raw_agent(serving, agent_id="serving")
    intruder = await raw_agent(daemon)
    await granted_raw_agent(intruder, agent_id="intruder")
    request = asyncio.create_task(
        http.post(
            daemon.url + "/v1/chat/completions",
            data=chat_body("hi", model="raw"),
            headers={**JSON, "X-MCP-Session": granted["session_id"]},
        )
    )
    invoke = await serving.recv()
    assert invoke["type"] == "model_invoke"
    forged = {
        "type": "model_result",
        "id": invoke["id"],
        "status": "ok",
        "result": {"choices": [{"message": {"content": "FORGED"}, "finish_reason": "stop"}]},
    }
    await intruder.send(forged)
    await until(lambda: daemon.state.router.dropped_frames == 1)
    real = json.loads(json.dumps(forged).replace("FORGED", "genuine"))
    await serving.send(real)
    async with await request as response:
        body = await response.json()
    assert body["choices"][0]["message"]["content"] == "genuine"
