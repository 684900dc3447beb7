"""A client library for writing agents that serve the daemon's requests.

A backend is a small class with one ``async def run(request)`` that yields events; the
``AgentClient`` does the rest: handshake and consent, concurrency, cancellation, heartbeats and
reconnecting with the session token. See docs/writing-an-agent.md.
"""

from mcp_local_provider.agent.backend import Backend, BackendError
from mcp_local_provider.agent.client import AgentClient, AgentRefused
from mcp_local_provider.agent.events import (
    BackendEvent,
    Embeddings,
    Finish,
    InvokeRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)

__all__ = [
    "AgentClient",
    "AgentRefused",
    "Backend",
    "BackendError",
    "BackendEvent",
    "Embeddings",
    "Finish",
    "InvokeRequest",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallDelta",
]
