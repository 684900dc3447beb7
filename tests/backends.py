"""Backends for tests: agents that call tools, think aloud, or fail half-way."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from mcp_local_provider.agent import Backend, BackendError, InvokeRequest
from mcp_local_provider.agent.events import (
    BackendEvent,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from mcp_local_provider.core.protocol import ModelSpec

USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


class ScriptedBackend(Backend):
    """Answers every request with the same events; records what it was asked."""

    name = "scripted"

    def __init__(
        self,
        script: Sequence[BackendEvent | Exception],
        *,
        model: str = "scripted",
        capabilities: tuple[str, ...] = ("chat", "completion", "tools", "thinking"),
    ) -> None:
        self.script = list(script)
        self.model = model
        self.capabilities = capabilities
        self.requests: list[InvokeRequest] = []

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(name=self.model, capabilities=self.capabilities, context_length=8192)]

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        self.requests.append(request)
        for item in self.script:
            if isinstance(item, Exception):
                raise item
            yield item


def tool_calling(*, repeat_name: bool = False, model: str = "tooly") -> ScriptedBackend:
    """Calls get_weather({"city": "Tokyo"}) in three argument fragments.

    With ``repeat_name`` it sends the id and name on every fragment, as some upstreams do; the
    daemon must still send them once.
    """
    again = {"id": "call_w1", "name": "get_weather"} if repeat_name else {}
    return ScriptedBackend(
        [
            ToolCallDelta(0, id="call_w1", name="get_weather", arguments=""),
            ToolCallDelta(0, arguments='{"city":', **again),
            ToolCallDelta(0, arguments=' "Tokyo"}', **again),
            Finish("tool_calls", USAGE),
        ],
        model=model,
    )


def thinking(model: str = "thinker") -> ScriptedBackend:
    return ScriptedBackend(
        [
            ReasoningDelta("let me see"),
            TextDelta("The answer"),
            TextDelta(" is 4."),
            Finish("stop", USAGE),
        ],
        model=model,
    )


def failing_midway(model: str = "flaky") -> ScriptedBackend:
    return ScriptedBackend(
        [TextDelta("partial "), BackendError("upstream fell over", "upstream_error")],
        model=model,
    )


class ToolRoundTrip(Backend):
    """Calls one tool, then answers with what the tool returned: a whole tool round trip.

    Records every request, so a test can check the tool result came back to the agent.
    """

    name = "round-trip"

    def __init__(self, tool: str, arguments: str, model: str = "roundtrip") -> None:
        self.tool = tool
        self.arguments = arguments
        self.model = model
        self.requests: list[InvokeRequest] = []

    def models(self) -> list[ModelSpec]:
        return [ModelSpec(name=self.model, capabilities=("chat", "tools"), context_length=65536)]

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        self.requests.append(request)
        results = [m for m in request.messages if m.get("role") == "tool"]
        if results:
            content = results[-1].get("content")
            text = content if isinstance(content, str) else str(content)
            yield TextDelta("The tool said: " + text.strip())
            yield Finish("stop", USAGE)
            return
        yield ToolCallDelta(0, id=f"call_{len(self.requests)}", name=self.tool)
        yield ToolCallDelta(0, arguments=self.arguments)
        yield Finish("tool_calls", USAGE)
