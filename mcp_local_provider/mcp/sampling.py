"""Sampling mode: each editor request becomes one ``sampling/createMessage`` to the MCP host.

The host's own model answers, so no agent has to loop over tools. The host sees the
conversation (system prompt apart, one text block per message), ``maxTokens``, temperature,
stop sequences and the requested model as a hint. Hosts may ignore the limits (VS Code does),
so stop sequences and max_tokens are applied again to the answer here.

Sampling is deprecated in the 2026-07-28 MCP revision, which also forbids requests from server
to host; it works only on connections that negotiate 2025-11-25 or earlier.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Literal

from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp_types import (
    METHOD_NOT_FOUND,
    ClientCapabilities,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ModelHint,
    ModelPreferences,
    SamplingCapability,
    SamplingMessage,
    TextContent,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest, TextDelta
from mcp_local_provider.mcp.common import ServingBackend
from mcp_local_provider.mcp.output_limit import estimate_tokens, limit
from mcp_local_provider.mcp.render import completion_prompt, message_text

# How hosts say "the user said no": the spec's example uses code -1; others only say it in words.
_REFUSAL = re.compile(r"reject|refus|denied|declin|not allowed|cancel", re.IGNORECASE)
_UNSUPPORTED = re.compile(r"not supported|unsupported|method not found", re.IGNORECASE)


class Host:
    """The MCP host on the other end of this connection, once it has said hello."""

    def __init__(self) -> None:
        self.session: ServerSession | None = None

    def attach(self, session: ServerSession) -> None:
        self.session = session

    @property
    def name(self) -> str | None:
        params = self.session.client_params if self.session is not None else None
        return params.client_info.name if params is not None else None

    def sampling_problem(self) -> str | None:
        """Why this host cannot be sampled, or None if it can."""
        session = self.session
        if session is None:
            return "the MCP host has not finished connecting"
        if session.protocol_version in MODERN_PROTOCOL_VERSIONS:
            return (
                f"this connection negotiated MCP revision {session.protocol_version}, which does "
                "not let a server ask the host for anything; sampling needs a host that "
                "connects with revision 2025-11-25 or earlier"
            )
        if not session.check_client_capability(ClientCapabilities(sampling=SamplingCapability())):
            return "this MCP host does not support sampling (it did not offer the capability)"
        return None


def sampling_params(request: InvokeRequest, default_max_tokens: int) -> CreateMessageRequestParams:
    """The ``sampling/createMessage`` parameters for one editor request."""
    system: list[str] = []
    turns: list[tuple[Literal["user", "assistant"], str]] = []
    if request.kind == "completion":
        turns.append(("user", completion_prompt(request)))
    for message in request.messages:
        role = str(message.get("role") or "user")
        text = message_text(message)
        if role in ("system", "developer"):
            if text:
                system.append(text)
            continue
        if role == "tool":
            text = f"[result of tool call {message.get('tool_call_id', '')}]\n{text}"
        turn: Literal["user", "assistant"] = "assistant" if role == "assistant" else "user"
        if not text:
            continue
        if turns and turns[-1][0] == turn:  # hosts want turns to alternate
            turns[-1] = (turn, turns[-1][1] + "\n\n" + text)
        else:
            turns.append((turn, text))
    if not turns:
        turns.append(("user", "(no message)"))
    temperature = request.parameters.get("temperature")
    return CreateMessageRequestParams(
        messages=[
            SamplingMessage(role=role, content=TextContent(type="text", text=text))
            for role, text in turns
        ],
        system_prompt="\n\n".join(system) or None,
        max_tokens=request.max_tokens or default_max_tokens,
        temperature=float(temperature) if isinstance(temperature, int | float) else None,
        stop_sequences=request.stop or None,
        model_preferences=(
            ModelPreferences(hints=[ModelHint(name=request.model)]) if request.model else None
        ),
    )


def _refused(exc: MCPError) -> BackendError:
    message = exc.message or "no reason given"
    if exc.code == -1 or _REFUSAL.search(message):
        return BackendError(
            f"forbidden: the host refused the sampling request ({message})", "forbidden"
        )
    if exc.code == METHOD_NOT_FOUND or _UNSUPPORTED.search(message):
        return BackendError(f"unsupported: the host cannot sample ({message})", "unsupported")
    return BackendError(f"the host's sampling request failed: {message}", "sampling_failed")


class SamplingBackend(ServingBackend):
    name = "mcp-sampling"

    def __init__(self, models: list[str], host: Host, default_max_tokens: int) -> None:
        super().__init__(models)
        self.host = host
        self.default_max_tokens = default_max_tokens

    async def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        problem = self.host.sampling_problem()
        if problem is not None or self.host.session is None:
            raise BackendError(f"unsupported: {problem}", "unsupported")
        if request.kind not in ("chat", "completion"):
            raise BackendError(
                f"unsupported: sampling cannot serve {request.kind} requests", "unsupported"
            )
        params = sampling_params(request, self.default_max_tokens)
        try:
            result = await self.host.session.send_request(
                CreateMessageRequest(params=params), CreateMessageResult
            )
        except NoBackChannelError:
            raise BackendError(
                "unsupported: this connection cannot carry requests to the host", "unsupported"
            ) from None
        except MCPError as exc:
            raise _refused(exc) from None
        except ValidationError as exc:
            raise BackendError(f"the host's sampling answer is malformed: {exc}") from None
        if not isinstance(result.content, TextContent):
            raise BackendError(
                f"unsupported: the host answered with {result.content.type} content; only text "
                "can be relayed",
                "unsupported",
            )
        text, cut = limit(result.content.text, request.stop, request.max_tokens)
        reason = cut or ("length" if result.stop_reason == "maxTokens" else "stop")
        if text:
            yield TextDelta(text)
        prompt = estimate_tokens(params.system_prompt or "")
        for message in params.messages:
            if isinstance(message.content, TextContent):
                prompt += estimate_tokens(message.content.text)
        completion = estimate_tokens(text)
        yield Finish(
            reason,
            {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        )
