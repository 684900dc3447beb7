"""From an HTTP request to router calls: ``call_for`` builds the router's view of a request,
``plan`` resolves a chat request and decides whether its tools and its structured output
format reach the agent, and
``fetch_embeddings`` runs the one call both API families make for embeddings."""

from __future__ import annotations

from typing import Any, Protocol

import structlog
from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import Call
from mcp_local_provider.core.catalog import STRUCTURED_FORMATS, Entry, plan_format, plan_tools
from mcp_local_provider.core.protocol import AnswerFrame, InvokePayload
from mcp_local_provider.http.state import SCOPE, STATE
from mcp_local_provider.translate.common import as_parameters
from mcp_local_provider.translate.embeddings import embedding_payload, usage_of, vectors

log = structlog.get_logger("mcp_local_provider.calls")


async def fetch_embeddings(
    request: web.Request, entry: Entry, texts: list[str], dimensions: int | None
) -> tuple[list[list[float]], dict[str, Any]]:
    """Ask the agent for embeddings of ``texts``: (vectors, usage), for either API family."""
    payload = embedding_payload(entry, texts, dimensions)
    call = call_for(
        request, "embedding", entry.target, payload, False, ["embedding"], permission="embeddings"
    )
    last: AnswerFrame | None = None
    async with request.app[STATE].router.open(call) as frames:
        async for frame in frames:
            last = frame
        if last is None:  # pragma: no cover - the router always ends with a frame or an error
            raise errors.AgentFailed("the agent ended the request without an answer")
        return vectors(last, len(texts)), usage_of(last)


class ToolOffering(Protocol):
    """A chat request that may carry tools, in any dialect."""

    model: str

    @property
    def format_param(self) -> str:
        """The dialect's name for its structured output field (``response_format``, ...)."""

    @property
    def offers_tools(self) -> bool:
        """Tools are present and ``tool_choice`` is not ``none``."""

    @property
    def forces_tools(self) -> bool:
        """``tool_choice`` requires a call: ``required``, Anthropic ``any``, a named tool."""

    def needs(self, tools_optional: bool = False) -> list[str]: ...

    def payload(self, target: str | None = None, with_tools: bool = True) -> InvokePayload: ...


def plan(request: web.Request, asked: ToolOffering) -> tuple[Entry, InvokePayload, list[str]]:
    """(entry, agent payload, needs) for a chat request on any route. Whether its tools reach
    the agent is ``plan_tools``'s decision (``core/catalog.py``), under the model's ``tools``
    setting; tools left out are logged and named in the response's ``X-MCP-Tools`` header."""
    catalog = request.app[STATE].catalog
    needs = [n for n in asked.needs(tools_optional=True) if n != "tools"]
    entry = catalog.resolve(asked.model, needs)
    tools = plan_tools(
        entry, asked.model, asked.offers_tools, asked.forces_tools, catalog.tools_mode(entry)
    )
    if tools.dropped:
        request[SCOPE].tools_not_offered = True
        log.info("tools_not_offered", model=asked.model, reason="the model does not declare tools")
    if tools.declared:
        needs.insert(1, "tools")
    payload = asked.payload(entry.target, tools.offer)
    apply_format(request, entry, asked.model, payload, asked.format_param)
    return entry, payload, needs


def apply_format(
    request: web.Request, entry: Entry, model: str, payload: InvokePayload, param: str
) -> None:
    """Leave a structured output format the agent will not apply out of ``payload`` (and say
    so in the response's ``X-MCP-Format`` header), or refuse it: ``plan_format``'s decision
    (``core/catalog.py``), under the model's ``tools`` setting."""
    parameters: dict[str, Any] = dict(payload.get("parameters") or {})
    wanted = parameters.get("response_format")
    asked = isinstance(wanted, dict) and wanted.get("type") in STRUCTURED_FORMATS
    catalog = request.app[STATE].catalog
    if asked and not plan_format(entry, model, asked, catalog.tools_mode(entry), param):
        del parameters["response_format"]
        payload["parameters"] = as_parameters(parameters)
        request[SCOPE].format_not_applied = True
        log.info("format_not_applied", model=model, reason="the model does not declare it")


#: Names the session to route to, instead of letting the router choose.
SESSION_HEADER = "X-MCP-Session"


def call_for(
    request: web.Request,
    kind: str,
    model: str,
    payload: InvokePayload,
    stream: bool,
    needs: list[str],
    permission: str = "inference",
) -> Call:
    """The router's view of an HTTP request: what to ask which model for."""
    request_scope = request[SCOPE]
    call = Call(
        kind=kind,
        model=model,
        payload=payload,
        stream=stream,
        permission=permission,
        needs=tuple(needs),
        session_hint=request.headers.get(SESSION_HEADER),
        request_id=request_scope.call_id(),
        request_scope=request_scope,
    )
    if request_scope.call is None:
        request_scope.call = call  # the audit line describes the request's first call
    return call
