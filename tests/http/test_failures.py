"""Every way a request can go wrong ends with one clear outcome, never a hang."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest

from mcp_local_provider.agent.backends.echo import EchoBackend
from tests.conftest import StartDaemon
from tests.fakes import Daemon, RawAgent, until

CHAT = "/v1/chat/completions"


def body(stream: bool = False, text: str = "hi") -> dict[str, Any]:
    return {"model": "raw", "stream": stream, "messages": [{"role": "user", "content": text}]}


async def granted_raw_agent(daemon: Daemon, raw_agent: Any) -> RawAgent:
    agent: RawAgent = await raw_agent(daemon)
    assert (await agent.hello())["type"] == "session_pending"
    assert (await agent.recv())["type"] == "session_granted"
    return agent


async def next_invoke(agent: RawAgent) -> dict[str, Any]:
    frame = await agent.recv()
    assert frame["type"] == "model_invoke", frame
    return frame


async def sse_events(response: aiohttp.ClientResponse) -> list[str]:
    text = (await response.read()).decode()
    return [block for block in text.split("\n\n") if block]


async def stream_with_first_chunk(
    daemon: Daemon, agent: RawAgent, http: aiohttp.ClientSession, text: str
) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
    """Start a streaming chat and have the agent send one chunk of ``text``.

    Headers go out with the first chunk, so the request runs while the agent answers.
    """
    request = asyncio.create_task(http.post(daemon.url + CHAT, json=body(stream=True)))
    invoke = await next_invoke(agent)
    await agent.send(
        {
            "type": "model_stream_chunk",
            "id": invoke["id"],
            "chunk_index": 0,
            "delta": {"content": text},
            "finish_reason": None,
        }
    )
    return invoke, await request


async def test_revoke_mid_stream_ends_the_stream_with_an_error_and_no_done(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    agent = await granted_raw_agent(daemon, raw_agent)
    invoke, response = await stream_with_first_chunk(daemon, agent, http, "partial")
    async with response:
        await response.content.readuntil(b"\n\n")  # the first chunk is through
        session_id = invoke["session_id"]
        async with http.post(
            f"{daemon.url}/control/sessions/{session_id}/revoke", headers=daemon.auth
        ) as r:
            assert r.status == 200
        rest = await sse_events(response)
    assert rest == [rest[0]] and '"code":"session_ended"' in rest[0]
    assert "[DONE]" not in "".join(rest)
    assert await agent.recv() == {
        "type": "session_ended",
        "session_id": session_id,
        "reason": "revoked",
    }
    assert await agent.closed() == 4408


async def test_agent_killed_mid_stream_gives_an_error_event_at_once(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    agent = await granted_raw_agent(daemon, raw_agent)
    _, response = await stream_with_first_chunk(daemon, agent, http, "partial")
    async with response:
        await response.content.readuntil(b"\n\n")
        await agent.ws.close()
        rest = await asyncio.wait_for(sse_events(response), 2)
    assert len(rest) == 1 and '"code":"agent_disconnected"' in rest[0]


async def test_agent_killed_before_answering_gives_502(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    agent = await granted_raw_agent(daemon, raw_agent)
    request = asyncio.create_task(http.post(daemon.url + CHAT, json=body()))
    await next_invoke(agent)
    await agent.ws.close()
    response = await asyncio.wait_for(request, 2)
    assert response.status == 502
    assert (await response.json())["error"]["code"] == "agent_disconnected"
    response.release()


async def test_client_disconnect_sends_model_cancel_and_frees_the_slot(
    daemon: Daemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    agent = await granted_raw_agent(daemon, raw_agent)
    request = asyncio.create_task(http.post(daemon.url + CHAT, json=body(stream=True)))
    invoke = await next_invoke(agent)
    request.cancel()  # the client goes away while the agent works
    cancel = await agent.recv()
    assert cancel == {"type": "model_cancel", "id": invoke["id"], "reason": "client_disconnected"}
    session = next(iter(daemon.state.registry))
    await until(lambda: session.in_flight == 0)
    # Frames that still arrive for the finished id are dropped and counted.
    await agent.send(
        {"type": "model_stream_chunk", "id": invoke["id"], "delta": {}, "finish_reason": "stop"}
    )
    await until(lambda: daemon.state.router.dropped_frames == 1)


async def test_client_disconnect_cancels_the_library_agents_task(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    backend = EchoBackend(delay=0.05)
    client, _ = await daemon.start_agent(backend)
    text = " ".join(["word"] * 200)
    async with http.post(
        daemon.url + CHAT, json={**body(stream=True, text=text), "model": "echo"}
    ) as response:
        await response.content.readuntil(b"\n\n")
        await until(lambda: client.in_flight == 1)
    # Leaving the block closes the connection mid-stream.
    await until(lambda: not client.in_flight)
    await until(lambda: daemon.state.router.in_flight == 0)


async def test_first_chunk_timeout_is_504_and_cancels_the_agent(
    start_daemon: StartDaemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(first_chunk_timeout=0.1)
    agent = await granted_raw_agent(daemon, raw_agent)
    request = asyncio.create_task(http.post(daemon.url + CHAT, json=body(stream=True)))
    invoke = await next_invoke(agent)
    assert await agent.recv() == {"type": "model_cancel", "id": invoke["id"], "reason": "timeout"}
    response = await request
    assert response.status == 504
    assert (await response.json())["error"]["code"] == "timeout"
    response.release()


async def test_idle_timeout_mid_stream_is_an_error_event(
    start_daemon: StartDaemon, raw_agent: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(idle_timeout=0.1)
    agent = await granted_raw_agent(daemon, raw_agent)
    _, response = await stream_with_first_chunk(daemon, agent, http, "slow")
    async with response:
        events = await sse_events(response)
    assert response.status == 200
    assert '"content":"slow"' in events[0] and '"code":"timeout"' in events[-1]
    assert (await agent.recv())["reason"] == "timeout"


async def test_agent_error_result_is_502_with_its_message(
    daemon: Daemon, raw_agent: Any, openai_client: Any
) -> None:
    agent = await granted_raw_agent(daemon, raw_agent)

    async def answer() -> None:
        invoke = await next_invoke(agent)
        await agent.send(
            {
                "type": "model_result",
                "id": invoke["id"],
                "status": "error",
                "error": {"code": "quota", "message": "out of credits"},
            }
        )

    answering = asyncio.create_task(answer())
    with pytest.raises(openai.APIStatusError) as raised:
        await openai_client(daemon).chat.completions.create(**body())
    await answering
    assert raised.value.status_code == 502
    assert "out of credits" in raised.value.message


async def test_streaming_invoke_answered_with_one_result_is_streamed_as_one_chunk(
    daemon: Daemon, raw_agent: Any, openai_client: Any
) -> None:
    agent = await granted_raw_agent(daemon, raw_agent)

    async def answer() -> None:
        invoke = await next_invoke(agent)
        await agent.send(
            {
                "type": "model_result",
                "id": invoke["id"],
                "status": "ok",
                "result": {
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "whole"},
                            "finish_reason": "stop",
                        }
                    ]
                },
            }
        )

    answering = asyncio.create_task(answer())
    stream = await openai_client(daemon).chat.completions.create(**body(stream=True))
    chunks = [c async for c in stream]
    await answering
    assert [c.choices[0].delta.content for c in chunks] == ["whole"]
    assert chunks[0].choices[0].finish_reason == "stop"


async def test_session_expiry_ends_the_agent_with_4409(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon()
    agent = await raw_agent(daemon)
    await agent.hello(ttl_seconds=0.1)
    granted = await agent.recv()
    assert granted["type"] == "session_granted"
    ended = await agent.recv()
    assert ended == {
        "type": "session_ended",
        "session_id": granted["session_id"],
        "reason": "expired",
    }
    assert await agent.closed() == 4409
    assert [s.state.value for s in daemon.state.registry] == ["expired"]


async def test_expired_session_token_cannot_resume(
    start_daemon: StartDaemon, raw_agent: Any
) -> None:
    daemon = await start_daemon()
    agent = await raw_agent(daemon)
    await agent.hello(ttl_seconds=0.1)
    granted = await agent.recv()
    assert await agent.closed() == 4409
    again = await raw_agent(daemon)
    await again.send(
        {
            "type": "hello",
            "protocol": 1,
            "agent_id": "raw-agent",
            "session_token": granted["session_token"],
        }
    )
    assert await again.closed() == 4401


async def test_library_agent_reconnects_and_resumes_after_a_drop(
    daemon: Daemon, openai_client: Any
) -> None:
    client, _ = await daemon.start_agent()
    session = next(iter(daemon.state.registry))
    assert session.link is not None
    await session.link.close(1011, "simulated drop")
    await until(lambda: client.connections == 2 and session.connected)
    reply = await openai_client(daemon).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "back again"}]
    )
    assert reply.choices[0].message.content == "back again"
    assert len(daemon.state.registry) == 1


async def test_request_during_a_reconnect_waits_for_the_agent(
    start_daemon: StartDaemon, openai_client: Any
) -> None:
    daemon = await start_daemon(reconnect_grace=3.0)
    await daemon.start_agent(backoff_initial=0.2)
    session = next(iter(daemon.state.registry))
    assert session.link is not None
    await session.link.close(1011, "simulated drop")
    await until(lambda: not session.connected)
    reply = await openai_client(daemon).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "waited"}]
    )
    assert reply.choices[0].message.content == "waited"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "empty"),
        (b"[]", "JSON object"),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model"),
        (json.dumps({"model": "echo"}).encode(), "messages"),
        (json.dumps({"model": "echo", "messages": []}).encode(), "messages"),
        (
            json.dumps({"model": "echo", "messages": [{"role": "robot", "content": "x"}]}).encode(),
            "messages.0.role",
        ),
        (
            json.dumps(
                {
                    "model": "echo",
                    "messages": [{"role": "user", "content": "x"}],
                    "temperature": "hot",
                }
            ).encode(),
            "temperature",
        ),
        (
            json.dumps(
                {"model": "../etc/passwd", "messages": [{"role": "user", "content": "x"}]}
            ).encode(),
            "model",
        ),
        (
            json.dumps(
                {"model": "echo", "messages": [{"role": "user", "content": "x"}], "n": 2}
            ).encode(),
            "n",
        ),
    ],
)
async def test_bad_input_is_400_in_openai_shape_naming_the_field(
    echo_daemon: Daemon, http: aiohttp.ClientSession, payload: bytes, fragment: str
) -> None:
    async with http.post(
        echo_daemon.url + CHAT, data=payload, headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400
        assert r.headers["Content-Type"].startswith("application/json")
        error = (await r.json())["error"]
    assert fragment in error["message"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


async def test_unknown_route_and_wrong_method_are_json_errors(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(daemon.url + "/v1/nothing") as r:
        assert r.status == 404 and "error" in await r.json()
    async with http.get(daemon.url + CHAT) as r:
        assert r.status == 405 and (await r.json())["error"]["message"]


@pytest.mark.parametrize(
    ("path", "shape"),
    [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic"), ("/api/chat", "ollama")],
)
async def test_wrong_method_is_a_client_error_naming_the_method_to_use(
    daemon: Daemon, http: aiohttp.ClientSession, path: str, shape: str
) -> None:
    async with http.get(daemon.url + path) as r:
        assert r.status == 405
        assert r.headers["Allow"] == "POST"
        body = await r.json()
    if shape == "openai":
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "method_not_allowed"
        assert body["error"]["message"] == "GET is not allowed on this route; use POST"
    elif shape == "anthropic":
        assert body["error"]["type"] == "invalid_request_error"
    else:
        assert body == {"error": "GET is not allowed on this route; use POST"}
