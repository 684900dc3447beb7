"""Structured output (``response_format``, Responses ``text.format``, Ollama ``format``) on a
model whose agent does not declare ``structured``: the ``[models] tools`` policy applies, so the
answer never silently ignores the format (``X-MCP-Format: not-applied``, or a 400)."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from mcp_local_provider.agent.events import Finish, TextDelta
from tests.backends import ScriptedBackend
from tests.fakes import Daemon

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
ASK = [{"role": "user", "content": "where?"}]
VERSION = {"anthropic-version": "2023-06-01"}


def body(route: str, model: str) -> dict[str, Any]:
    """A request on ``route`` asking for JSON matching SCHEMA, in the route's own shape."""
    if route == "/v1/responses":
        fmt = {"type": "json_schema", "name": "place", "schema": SCHEMA}
        return {"model": model, "input": "where?", "text": {"format": fmt}, "stream": False}
    if route == "/api/chat":
        return {"model": model, "messages": ASK, "format": SCHEMA, "stream": False}
    if route == "/api/generate":
        return {"model": model, "prompt": "where?", "format": "json", "stream": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}
    return {"model": model, "messages": ASK, "response_format": fmt}


ROUTES = ["/v1/chat/completions", "/v1/responses", "/api/chat", "/api/generate"]
PARAMS = {
    "/v1/chat/completions": "response_format",
    "/v1/responses": "text.format",
    "/api/chat": "format",
    "/api/generate": "format",
}


def agent(capabilities: tuple[str, ...]) -> ScriptedBackend:
    return ScriptedBackend(
        [TextDelta('{"city": "Oslo"}'), Finish("stop")], model="m", capabilities=capabilities
    )


async def post(
    http: aiohttp.ClientSession, daemon: Daemon, route: str
) -> tuple[int, dict[str, str], Any]:
    async with http.post(daemon.url + route, json=body(route, "m"), headers=VERSION) as response:
        return response.status, dict(response.headers), await response.json()


@pytest.mark.parametrize("route", ROUTES)
async def test_a_format_the_agent_cannot_apply_is_left_out_and_the_answer_says_so(
    daemon: Daemon, http: aiohttp.ClientSession, route: str
) -> None:
    backend = agent(("chat", "completion"))
    await daemon.start_agent(backend)
    status, headers, answer = await post(http, daemon, route)
    assert status == 200, answer
    assert headers["X-MCP-Format"] == "not-applied"
    assert "response_format" not in backend.requests[0].parameters


@pytest.mark.parametrize("route", ROUTES)
async def test_reject_mode_refuses_a_format_the_agent_cannot_apply_naming_the_field(
    start_daemon: Any, http: aiohttp.ClientSession, route: str
) -> None:
    daemon = await start_daemon(models={"tools": "reject"})
    backend = agent(("chat", "completion"))
    await daemon.start_agent(backend)
    status, headers, answer = await post(http, daemon, route)
    assert status == 400
    assert "X-MCP-Format" not in headers
    assert "does not support structured output" in str(answer)
    if route.startswith("/v1/"):
        assert answer["error"]["param"] == PARAMS[route]
    assert backend.requests == []


@pytest.mark.parametrize("route", ROUTES)
async def test_an_agent_declaring_structured_output_gets_the_format(
    daemon: Daemon, http: aiohttp.ClientSession, route: str
) -> None:
    backend = agent(("chat", "completion", "structured"))
    await daemon.start_agent(backend)
    status, headers, answer = await post(http, daemon, route)
    assert status == 200, answer
    assert "X-MCP-Format" not in headers
    assert backend.requests[0].parameters["response_format"]["type"] in (
        "json_schema",
        "json_object",
    )


async def test_emulate_mode_passes_the_format_to_an_agent_that_does_not_declare_it(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(models={"tools_per_model": {"m": "emulate"}})
    backend = agent(("chat",))
    await daemon.start_agent(backend)
    status, headers, _ = await post(http, daemon, "/v1/chat/completions")
    assert status == 200
    assert "X-MCP-Format" not in headers
    assert backend.requests[0].parameters["response_format"]["type"] == "json_schema"


async def test_a_plain_text_format_needs_nothing(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await daemon.start_agent()  # the echo agent: no structured output
    sent = {"model": "echo", "messages": ASK, "response_format": {"type": "text"}}
    async with http.post(daemon.url + "/v1/chat/completions", json=sent) as response:
        assert response.status == 200
        assert "X-MCP-Format" not in response.headers
