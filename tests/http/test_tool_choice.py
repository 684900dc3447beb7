"""Tools and ``tool_choice`` on every chat route: what reaches the agent, and how a model whose
agent declares no tools answers (in text, with ``X-MCP-Tools: not-offered``, or a 400)."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from mcp_local_provider.agent.events import Finish, TextDelta
from tests.backends import ScriptedBackend, tool_calling
from tests.fakes import Daemon

TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
ASK = [{"role": "user", "content": "weather in Tokyo?"}]
VERSION = {"anthropic-version": "2023-06-01"}


def body(route: str, model: str, choice: str | None = None) -> dict[str, Any]:
    """A request on ``route`` offering get_weather, with ``choice`` in the route's own shape
    (``auto``, ``none``, ``required`` or ``named``)."""
    if route == "/v1/messages":
        tools: Any = [{"name": TOOL["name"], "input_schema": TOOL["parameters"]}]
        shapes: dict[str, Any] = {
            "auto": {"type": "auto"},
            "none": {"type": "none"},
            "required": {"type": "any"},
            "named": {"type": "tool", "name": "get_weather"},
        }
        out = {"model": model, "max_tokens": 64, "messages": ASK, "tools": tools}
    elif route == "/v1/responses":
        tools = [{"type": "function", **TOOL}]
        shapes = {
            "auto": "auto",
            "none": "none",
            "required": "required",
            "named": {"type": "function", "name": "get_weather"},
        }
        out = {"model": model, "input": "weather in Tokyo?", "tools": tools}
    else:
        tools = [{"type": "function", "function": TOOL}]
        shapes = {
            "auto": "auto",
            "none": "none",
            "required": "required",
            "named": {"type": "function", "function": {"name": "get_weather"}},
        }
        out = {"model": model, "messages": ASK, "tools": tools, "stream": False}
    if choice is not None:
        out["tool_choice"] = shapes[choice]
    return out


ROUTES = ["/v1/chat/completions", "/api/chat", "/v1/messages", "/v1/responses"]
FORCING_ROUTES = ["/v1/chat/completions", "/v1/messages", "/v1/responses"]  # Ollama: no choice


def plain(model: str = "plain") -> ScriptedBackend:
    """An agent whose model declares chat only."""
    return ScriptedBackend(
        [TextDelta("sunny, I think"), Finish("stop")], model=model, capabilities=("chat",)
    )


async def post(
    http: aiohttp.ClientSession, daemon: Daemon, route: str, sent: dict[str, Any]
) -> tuple[int, dict[str, str], Any]:
    async with http.post(daemon.url + route, json=sent, headers=VERSION) as response:
        return response.status, dict(response.headers), await response.json()


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("choice", [None, "auto"])
async def test_optional_tools_on_a_model_without_tools_are_answered_in_text_with_a_header(
    daemon: Daemon, http: aiohttp.ClientSession, route: str, choice: str | None
) -> None:
    backend = plain()
    await daemon.start_agent(backend)
    status, headers, answer = await post(http, daemon, route, body(route, "plain", choice))
    assert status == 200, answer
    assert headers["X-MCP-Tools"] == "not-offered"
    assert "sunny" in str(answer)
    parameters = backend.requests[0].parameters
    assert "tools" not in parameters and "tool_choice" not in parameters


@pytest.mark.parametrize("route", FORCING_ROUTES)
@pytest.mark.parametrize("choice", ["required", "named"])
async def test_forced_tool_call_on_a_model_without_tools_is_a_400_in_the_route_shape(
    daemon: Daemon, http: aiohttp.ClientSession, route: str, choice: str
) -> None:
    backend = plain()
    await daemon.start_agent(backend)
    status, _, answer = await post(http, daemon, route, body(route, "plain", choice))
    assert status == 400
    message = answer["error"]["message"]
    assert "does not support tool calls" in message and "tool_choice" in message
    if route == "/v1/messages":
        assert answer["type"] == "error"
    assert backend.requests == []


@pytest.mark.parametrize("route", ROUTES)
async def test_reject_mode_refuses_optional_tools(
    start_daemon: Any, http: aiohttp.ClientSession, route: str
) -> None:
    daemon = await start_daemon(models={"tools_per_model": {"plain": "reject"}})
    await daemon.start_agent(plain())
    status, headers, answer = await post(http, daemon, route, body(route, "plain"))
    assert status == 400
    assert "X-MCP-Tools" not in headers
    assert "does not support tool calls" in str(answer)


async def test_emulate_mode_passes_tools_to_an_agent_that_does_not_declare_them(
    start_daemon: Any, http: aiohttp.ClientSession
) -> None:
    daemon = await start_daemon(models={"tools": "emulate"})
    backend = plain()
    await daemon.start_agent(backend)
    route = "/v1/chat/completions"
    status, headers, _ = await post(http, daemon, route, body(route, "plain", "required"))
    assert status == 200
    assert "X-MCP-Tools" not in headers
    assert backend.requests[0].parameters["tool_choice"] == "required"


@pytest.mark.parametrize("route", FORCING_ROUTES)
async def test_tool_choice_none_offers_no_tools_to_a_tools_model(
    daemon: Daemon, http: aiohttp.ClientSession, route: str
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    status, headers, _ = await post(http, daemon, route, body(route, "tooly", "none"))
    assert status == 200
    assert "X-MCP-Tools" not in headers  # the client itself asked for no tools
    assert "tools" not in backend.requests[0].parameters


@pytest.mark.parametrize("route", FORCING_ROUTES)
@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("required", "required"),
        ("named", {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
async def test_tool_choice_reaches_the_agent_in_one_shape_from_every_route(
    daemon: Daemon, http: aiohttp.ClientSession, route: str, choice: str, expected: Any
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    status, _, answer = await post(http, daemon, route, body(route, "tooly", choice))
    assert status == 200, answer
    parameters = backend.requests[0].parameters
    assert parameters["tool_choice"] == expected
    assert parameters["tools"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("route", "extra"),
    [
        ("/v1/chat/completions", {"parallel_tool_calls": False}),
        ("/v1/responses", {"parallel_tool_calls": False}),
        ("/v1/messages", {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}}),
    ],
)
async def test_parallel_tool_calls_off_reaches_the_agent(
    daemon: Daemon, http: aiohttp.ClientSession, route: str, extra: dict[str, Any]
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    status, _, answer = await post(http, daemon, route, {**body(route, "tooly"), **extra})
    assert status == 200, answer
    assert backend.requests[0].parameters["parallel_tool_calls"] is False


@pytest.mark.parametrize("route", FORCING_ROUTES)
async def test_a_named_tool_that_is_not_offered_is_a_400(
    daemon: Daemon, http: aiohttp.ClientSession, route: str
) -> None:
    backend = tool_calling()
    await daemon.start_agent(backend)
    sent = body(route, "tooly", "named")
    if route in ("/v1/messages", "/v1/responses"):
        sent["tool_choice"]["name"] = "launch"
    else:
        sent["tool_choice"]["function"]["name"] = "launch"
    status, _, answer = await post(http, daemon, route, sent)
    assert status == 400
    assert "'launch'" in str(answer) and "not among the request's tools" in str(answer)
    assert backend.requests == []


async def test_openai_client_gets_text_and_the_header_from_a_model_without_tools(
    daemon: Daemon, openai_client: Any
) -> None:
    await daemon.start_agent(plain())
    raw = await openai_client(daemon).chat.completions.with_raw_response.create(
        model="plain", messages=ASK, tools=[{"type": "function", "function": TOOL}], stream=True
    )
    assert raw.headers["X-MCP-Tools"] == "not-offered"
    chunks = [c async for c in raw.parse()]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "sunny, I think"
    )


async def test_openai_client_forcing_a_tool_on_a_model_without_tools_gets_a_400(
    daemon: Daemon, openai_client: Any
) -> None:
    await daemon.start_agent(plain())
    with pytest.raises(openai.BadRequestError) as raised:
        await openai_client(daemon).chat.completions.create(
            model="plain",
            messages=ASK,
            tools=[{"type": "function", "function": TOOL}],
            tool_choice="required",
        )
    assert "tool_choice" in raised.value.message
