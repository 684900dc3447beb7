"""The state one MCP connection serves with, and what each tool does with it.

``Provider`` holds the host, the backend (the inbox in tools mode, sampling in sampling mode)
and the agent session; ``server.py`` exposes its methods as tools.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import structlog
from mcp_types import CallToolResult, TextContent

from mcp_local_provider.core.config import Config
from mcp_local_provider.mcp.common import ServingBackend, Signal
from mcp_local_provider.mcp.inbox import Deadlines, Inbox, Reply
from mcp_local_provider.mcp.render import request_data, request_text
from mcp_local_provider.mcp.sampling import Host, SamplingBackend
from mcp_local_provider.mcp.session import Access, AccessError, agent_id_for
from mcp_local_provider.policy.tokens import TokenError, read_existing

log = structlog.get_logger("mcp_local_provider.mcp")

SERVABLE_SCOPES = ("inference",)


@dataclass(frozen=True)
class Options:
    """How this server dials in; flags of ``mcp-local-provider mcp``."""

    url: str
    sampling: bool = False
    models: tuple[str, ...] = ()
    label: str | None = None
    ttl_seconds: float | None = None


def _result(text: str, data: dict[str, Any], *, error: bool = False) -> CallToolResult:
    # Text for the model to read, the same facts as structured content for programs; no
    # outputSchema is declared, so hosts need not validate it.
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=data, is_error=error
    )


def reply_result(reply: Reply, request_id: str) -> CallToolResult:
    data: dict[str, Any] = {"status": reply.status, "request_id": request_id}
    if reply.finish_reason:
        data["finish_reason"] = reply.finish_reason
    return _result(reply.message, data, error=reply.is_error)


class Provider:
    """The state one MCP connection serves with: the host, the backend and the session."""

    def __init__(
        self, config: Config, options: Options, token: Callable[[], str] | None = None
    ) -> None:
        self.config = config
        self.options = options
        self.signal = Signal()
        self.host = Host()
        self.backend: ServingBackend
        self.inbox: Inbox | None = None
        models = list(options.models or config.mcp_models)
        if options.sampling:
            self.backend = SamplingBackend(models, self.host, config.mcp_sampling_max_tokens)
        else:
            deadlines = Deadlines(
                config.first_chunk_timeout, config.idle_timeout, config.total_timeout
            )
            self.inbox = Inbox(models, deadlines, self.signal)
            self.backend = self.inbox
        self.access = Access(
            options.url,
            token or (lambda: read_existing(config)),
            self.backend,
            self.signal,
            connect_timeout=config.hello_timeout,
            heartbeat=config.heartbeat,
        )
        self._dialing: asyncio.Task[None] | None = None

    # -- access --------------------------------------------------------------------------------

    async def request_access(
        self, scopes: list[str], reason: str, ttl_seconds: float, models: list[str]
    ) -> CallToolResult:
        unknown = [s for s in scopes if s not in SERVABLE_SCOPES]
        if unknown:
            return _result(
                f"Cannot serve {unknown}: an agent answering through MCP can serve only "
                "'inference' (chat and code completion).",
                {"status": "error", "error": "unsupported_scope"},
                error=True,
            )
        if self.options.sampling:
            problem = self.host.sampling_problem()
            if problem is not None:
                return _result(
                    f"unsupported: {problem}. Run the server without --sampling to answer "
                    "requests through the tools instead.",
                    {"status": "error", "error": "unsupported", "message": problem},
                    error=True,
                )
        try:
            await self.access.request(
                scopes=scopes or list(SERVABLE_SCOPES),
                reason=reason or "serve the editor as its local model",
                ttl_seconds=ttl_seconds or self.options.ttl_seconds,
                models=models or list(self.options.models or self.config.mcp_models),
                agent_id=agent_id_for(self.host.name),
                label=self.options.label or f"{self.host.name or 'MCP host'} (via MCP)",
            )
        except (AccessError, TokenError) as exc:
            return _result(str(exc), {"status": "error", "error": "cannot_request"}, error=True)
        result = self.status()
        result.is_error = self.access.state == "ended"
        return result

    def status(self) -> CallToolResult:
        data = self.access.snapshot()
        data["mode"] = "sampling" if self.options.sampling else "tools"
        data["daemon"] = self.access.url
        if self.inbox is not None:
            data["requests_waiting"] = self.inbox.waiting()
            data["requests_held"] = self.inbox.held()
        return _result(self._describe(data), data)

    def _describe(self, data: dict[str, Any]) -> str:
        state, sid = data["status"], data.get("session_id")
        if state == "none":
            return "No access yet: call request_local_provider_access."
        if state == "connecting":
            return (
                f"Connecting to the daemon at {data['daemon']}; check again with provider_status."
            )
        if state == "pending":
            return (
                f"Session {sid} is waiting for the user's approval. Ask the user to run "
                f"`{data['approve_with']}` (or to answer the prompt in the terminal running the "
                "daemon). "
                + (
                    "Requests are answered through sampling once it is approved."
                    if self.options.sampling
                    else "Meanwhile call next_request: it waits for the approval."
                )
            )
        if state == "granted":
            models = ", ".join(data.get("models") or [])
            text = f"Access granted: session {sid} serves {models} until {data.get('expires_at')}."
            if self.options.sampling:
                return text + " Each request is answered through sampling; nothing else to do."
            held = data.get("requests_held") or []
            return (
                text
                + f" {data.get('requests_waiting', 0)} request(s) waiting"
                + (f", holding {', '.join(held)}" if held else "")
                + ". Loop: next_request, then respond."
            )
        hint = ""
        if data.get("reason") == "refused":
            hint = " Is the daemon running? Start it with `mcp-local-provider serve`."
        return f"Access ended ({data.get('reason')}): {data.get('message')}.{hint}"

    async def release(self) -> CallToolResult:
        await self.access.release()
        return self.status()

    # -- sampling mode -------------------------------------------------------------------------

    def host_ready(self) -> None:
        """The host finished its handshake: in sampling mode, dial in right away."""
        if not self.options.sampling or self._dialing is not None:
            return
        problem = self.host.sampling_problem()
        if problem is not None:
            log.warning("mcp_sampling_unavailable", problem=problem)
            return
        self._dialing = asyncio.create_task(self._dial())

    async def _dial(self) -> None:
        result = await self.request_access(list(SERVABLE_SCOPES), "", 0, [])
        text = result.content[0].text if isinstance(result.content[0], TextContent) else ""
        report = log.warning if result.is_error else log.info
        report("mcp_sampling_access", status=self.access.state, detail=text)

    # -- tools mode ----------------------------------------------------------------------------

    async def next_request(self, wait_seconds: float) -> CallToolResult:
        assert self.inbox is not None
        access, inbox = self.access, self.inbox
        wait = min(max(wait_seconds, 0.0), self.config.mcp_wait_limit)
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        if access.state == "none":
            return _result(
                "No access yet: call request_local_provider_access first.",
                {"status": "no_access"},
                error=True,
            )
        await access.wait(lambda: access.state not in ("connecting", "pending"), wait)
        if access.state == "granted":
            ticket = await inbox.take(
                max(end - loop.time(), 0.0), give_up=lambda: access.state != "granted"
            )
            if ticket is not None:
                data = request_data(ticket.request, ticket.answer_within(inbox.deadlines))
                return _result(request_text(data), data)
        if access.state == "granted":
            return _result(
                f"No request yet (waited {wait:g} s). Call next_request again.",
                {"status": "none", "waited_seconds": wait},
            )
        if access.state in ("connecting", "pending"):
            data = {**access.snapshot(), "status": "waiting_for_approval"}
            return _result(
                f"Still waiting for the user to approve session {access.session_id}: "
                f"`{access.approve_with}`. Call next_request again.",
                data,
            )
        data = access.snapshot()
        return _result(
            self._describe({**data, "daemon": access.url}) + " Stop serving.",
            {**data, "status": "ended"},
        )

    async def close(self) -> None:
        if self._dialing is not None:
            self._dialing.cancel()
            with suppress(asyncio.CancelledError):
                await self._dialing
        await self.access.release(grace=2.0)
