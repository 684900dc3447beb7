"""``mcp-local-provider mcp``: the MCP server that lets an MCP host's agent serve as the model.

In tools mode (the default) the host's agent loops over next_request / respond. In sampling
mode (``--sampling``) each request is answered by asking the host's model directly. Either way
the server dials the daemon as an ordinary agent (``mcp_local_provider.agent``), so consent,
scopes, TTL, cancel and resume work as for every agent.
"""

# No ``from __future__ import annotations`` here: the SDK evaluates the tools' annotations when
# they are registered, and some of them use values known only then (the wait limit).
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from mcp_local_provider import __version__
from mcp_local_provider.core.config import Config
from mcp_local_provider.mcp import wording
from mcp_local_provider.mcp.provider import SERVABLE_SCOPES, Options, Provider, reply_result

__all__ = ["Options", "build_server", "run_stdio"]


def build_server(
    config: Config, options: Options, token: Callable[[], str] | None = None
) -> MCPServer[Any]:
    """The MCP server for one host connection (stdio serves exactly one)."""
    provider = Provider(config, options, token)

    async def watch_host(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if provider.host.session is None or ctx.method == "notifications/initialized":
            provider.host.attach(ctx.session)
        result = await call_next(ctx)
        if ctx.method == "notifications/initialized":
            provider.host_ready()
        return result

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        try:
            yield {}
        finally:
            await provider.close()

    server: MCPServer[Any] = MCPServer(
        "mcp-local-provider",
        title="Local model provider",
        version=__version__,
        instructions=wording.SAMPLING_INSTRUCTIONS if options.sampling else wording.INSTRUCTIONS,
        lifespan=lifespan,
        middleware=[watch_host],
        log_level="WARNING",
    )
    _add_access_tools(server, provider)
    if not options.sampling:
        _add_loop_tools(server, provider)
    return server


Scopes = Annotated[
    tuple[str, ...], Field(description="what to serve; only 'inference' is possible")
]
Reason = Annotated[str, Field(description="one line shown to the user when approving")]
Ttl = Annotated[float, Field(ge=0, description="session lifetime in seconds; 0: default")]
Models = Annotated[tuple[str, ...], Field(description="model names the editor sees")]
RequestId = Annotated[str, Field(description="the request_id from next_request")]


def _add_access_tools(server: MCPServer[Any], provider: Provider) -> None:
    sampling = provider.options.sampling

    @server.tool(
        description=wording.SAMPLING_REQUEST_ACCESS if sampling else wording.REQUEST_ACCESS,
        annotations=ToolAnnotations(title="Request access", idempotent_hint=True),
    )
    async def request_local_provider_access(
        scopes: Scopes = SERVABLE_SCOPES,
        reason: Reason = "",
        ttl_seconds: Ttl = 0,
        models: Models = (),
    ) -> CallToolResult:
        return await provider.request_access(list(scopes), reason, ttl_seconds, list(models))

    @server.tool(
        description=wording.STATUS,
        annotations=ToolAnnotations(title="Provider status", read_only_hint=True),
    )
    async def provider_status() -> CallToolResult:
        return provider.status()

    @server.tool(
        description=wording.RELEASE,
        annotations=ToolAnnotations(title="Release access", idempotent_hint=True),
    )
    async def release_access() -> CallToolResult:
        return await provider.release()


def _add_loop_tools(server: MCPServer[Any], provider: Provider) -> None:
    inbox = provider.inbox
    assert inbox is not None
    limit = provider.config.mcp_wait_limit

    @server.tool(
        description=wording.next_request(limit),
        annotations=ToolAnnotations(title="Next request", read_only_hint=False),
    )
    async def next_request(
        wait_seconds: Annotated[
            float, Field(ge=0, description=f"seconds to wait for a request (at most {limit:g})")
        ] = limit,
    ) -> CallToolResult:
        return await provider.next_request(wait_seconds)

    @server.tool(description=wording.RESPOND, annotations=ToolAnnotations(title="Respond"))
    async def respond(
        request_id: RequestId,
        content: Annotated[str, Field(description="the answer (or its rest)")],
        finish_reason: Annotated[
            Literal["stop", "length"], Field(description="'stop', or 'length' if cut short")
        ] = "stop",
    ) -> CallToolResult:
        return reply_result(inbox.respond(request_id, content, finish_reason), request_id)

    @server.tool(
        description=wording.RESPOND_PARTIAL, annotations=ToolAnnotations(title="Respond partially")
    )
    async def respond_partial(
        request_id: RequestId,
        content: Annotated[str, Field(description="the next piece of the answer")],
    ) -> CallToolResult:
        return reply_result(inbox.partial(request_id, content), request_id)

    @server.tool(description=wording.DECLINE, annotations=ToolAnnotations(title="Decline"))
    async def decline(
        request_id: RequestId,
        reason: Annotated[str, Field(description="why, shown to the editor")] = "",
    ) -> CallToolResult:
        return reply_result(inbox.decline(request_id, reason), request_id)

    @server.prompt(
        name="serve_as_local_model",
        title="Serve as the local model",
        description=wording.PROMPT_DESCRIPTION,
    )
    def serve_as_local_model() -> str:
        return wording.serve_prompt(limit)


async def run_stdio(config: Config, options: Options) -> None:
    """Serve one MCP host over stdin/stdout until it hangs up."""
    await build_server(config, options).run_stdio_async()
