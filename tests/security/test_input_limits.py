"""Input limits: body size (Content-Length and chunked), messages and characters, model names
and ids, slow bodies and headers, WebSocket frame size, compression, and caps on requests in
flight and open connections. Each has a clear error, never a hang or a 500."""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import Any

import aiohttp
import pytest

from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.http.state import STATE
from tests.fakes import Daemon, until
from tests.security.helpers import (
    chat_body,
    granted_raw_agent,
    parse_response,
    port_of,
    raw_exchange,
    raw_request,
)

JSON = {"Content-Type": "application/json"}


async def post_chat(
    daemon: Daemon, http: aiohttp.ClientSession, body: bytes, **headers: str
) -> Any:
    async with http.post(
        daemon.url + "/v1/chat/completions", data=body, headers={**JSON, **headers}
    ) as response:
        return response.status, await response.json()


async def test_body_over_the_limit_is_413(start_daemon: Any, http: aiohttp.ClientSession) -> None:
    daemon = await start_daemon(max_body_bytes=4096)
    status, body = await post_chat(daemon, http, chat_body("x" * 5000))
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"


async def test_default_body_limit_is_10_mib(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    assert daemon.app[STATE].security.config.max_body_bytes == 10 * 1024 * 1024
    body = io.BytesIO(chat_body("x" * (10 * 1024 * 1024 + 1)))
    async with http.post(daemon.url + "/v1/chat/completions", data=body, headers=JSON) as r:
        assert r.status == 413


async def test_chunked_body_over_the_limit_is_413(start_daemon: Any) -> None:
    daemon = await start_daemon(max_body_bytes=4096)
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"x" * 1000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(6)) + b"0\r\n\r\n"
    response = parse_response(await raw_exchange(port_of(daemon), head + body))
    assert response.status == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_too_many_messages_is_400(echo_daemon: Daemon, http: aiohttp.ClientSession) -> None:
    messages = [{"role": "user", "content": "hi"}] * 101
    status, body = await post_chat(
        echo_daemon, http, json.dumps({"model": "echo", "messages": messages}).encode()
    )
    assert status == 400
    assert "messages" in body["error"]["message"] and "100" in body["error"]["message"]


async def test_message_and_request_character_limits_are_400(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(max_message_chars=100, max_request_chars=150)
    await daemon.start_agent()
    status, body = await post_chat(daemon, http, chat_body("x" * 101))
    assert status == 400 and body["error"]["param"] == "messages.0"
    parts = [{"type": "text", "text": "y" * 60}, {"type": "text", "text": "y" * 60}]
    messages = [{"role": "user", "content": parts}]
    status, body = await post_chat(
        daemon, http, json.dumps({"model": "echo", "messages": messages}).encode()
    )
    assert status == 400 and body["error"]["param"] == "messages.0"
    messages = [{"role": "user", "content": "z" * 80}, {"role": "user", "content": "z" * 80}]
    status, body = await post_chat(
        daemon, http, json.dumps({"model": "echo", "messages": messages}).encode()
    )
    assert status == 400 and "150" in body["error"]["message"]
    status, _ = await post_chat(daemon, http, chat_body("ok"))
    assert status == 200


@pytest.mark.parametrize(
    "model", ["../../etc/passwd", "a/../b", "/abs", "echo/", "a//b", "ec ho", "e\ncho", "a\\b", ""]
)
async def test_unsafe_model_names_are_400(
    echo_daemon: Daemon, http: aiohttp.ClientSession, model: str
) -> None:
    status, body = await post_chat(echo_daemon, http, chat_body(model=model))
    assert status == 400
    assert body["error"]["param"] == "model"


async def test_malformed_session_hint_is_400(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    status, body = await post_chat(echo_daemon, http, chat_body(), **{"X-MCP-Session": "../x"})
    assert status == 400
    assert body["error"]["param"] == "X-MCP-Session"


async def test_malformed_session_id_on_the_control_api_is_404_and_shown_escaped(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.post(
        daemon.url + "/control/sessions/sess-%0A%1B[31m/approve", headers=daemon.auth
    ) as response:
        assert response.status == 404
        message = (await response.json())["error"]["message"]
    assert "\n" not in message and "\x1b" not in message


async def test_slow_body_is_408_and_the_connection_closes(start_daemon: Any) -> None:
    daemon = await start_daemon(body_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(daemon))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model"'
    )
    await writer.drain()
    started = time.monotonic()
    async with asyncio.timeout(5):
        data = await reader.read()  # until the daemon closes
    writer.close()
    response = parse_response(data)
    assert response.status == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert 0.25 <= time.monotonic() - started < 3


async def test_slow_headers_are_cut_off_by_keepalive_timeout(start_daemon: Any) -> None:
    daemon = await start_daemon(keepalive_timeout=0.4)
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(daemon))
    started = time.monotonic()
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed_after = None
    for _ in range(40):  # a header line every 0.1 s: slowloris
        try:
            writer.write(b"X-Slow: 1\r\n")
            await writer.drain()
        except ConnectionError:
            closed_after = time.monotonic() - started
            break
        try:
            async with asyncio.timeout(0.1):
                if await reader.read(1) == b"":
                    closed_after = time.monotonic() - started
                    break
        except TimeoutError:
            continue
    writer.close()
    assert closed_after is not None, "the daemon kept a slowloris connection open"
    assert 0.35 <= closed_after < 2.5


async def test_oversized_agent_frame_closes_with_1009(start_daemon: Any, raw_agent: Any) -> None:
    daemon = await start_daemon(max_frame_bytes=2048)
    agent = await raw_agent(daemon)
    await granted_raw_agent(agent)
    await agent.ws.send_str(json.dumps({"type": "model_result", "id": "x" * 4000}))
    assert await agent.closed() == 1009
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/health") as response:
        assert response.status == 200


async def test_agent_socket_does_not_negotiate_compression(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(daemon.ws_url, headers=daemon.auth, compress=15)
    try:
        assert ws.compress == 0
    finally:
        await ws.close()


async def test_requests_beyond_max_in_flight_are_503(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(max_in_flight=1)
    await daemon.start_agent(EchoBackend(delay=0.1))
    security = daemon.app[STATE].security
    slow = asyncio.create_task(post_chat(daemon, http, chat_body("one two three four five")))
    await until(lambda: security.in_flight == 1)
    async with http.post(
        daemon.url + "/v1/chat/completions", data=chat_body(), headers=JSON
    ) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"]["code"] == "overloaded"
    async with http.get(daemon.url + "/health") as response:  # liveness is not capped
        assert response.status == 200
    assert (await slow)[0] == 200
    assert security.in_flight == 0


async def test_connections_beyond_max_connections_get_503(daemon_process: Any) -> None:
    daemon = await daemon_process(max_connections=2)
    held = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        held.append(writer)
    response = await raw_request(daemon.port, "GET", "/v1/models")
    assert response.status == 503
    assert response.json()["error"]["code"] == "overloaded"
    assert response.headers["x-content-type-options"] == "nosniff"
    ollama = await raw_request(daemon.port, "GET", "/api/tags")
    assert isinstance(ollama.json()["error"], str)
    held.pop().close()
    for _ in range(100):
        again = await raw_request(daemon.port, "GET", "/health")
        if again.status == 200:
            break
        await asyncio.sleep(0.02)
    assert again.status == 200
    for writer in held:
        writer.close()


async def test_limits_hold_on_the_ollama_routes_in_their_shape(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    messages = [{"role": "user", "content": "hi"}] * 101
    async with http.post(
        echo_daemon.url + "/api/chat", json={"model": "echo", "messages": messages}
    ) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert isinstance(error, str) and "100" in error


@pytest.mark.parametrize("name", ["a%2F..%2Fb", "x%20y", "a%5Cb"])
async def test_model_names_in_the_path_are_checked(
    echo_daemon: Daemon, http: aiohttp.ClientSession, name: str
) -> None:
    async with http.get(echo_daemon.url + "/v1/models/" + name) as response:
        assert response.status == 400
        assert (await response.json())["error"]["param"] == "model"
