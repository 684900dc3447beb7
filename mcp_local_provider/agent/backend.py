"""The interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from mcp_local_provider.agent.emulation import emulate
from mcp_local_provider.agent.events import BackendEvent, InvokeRequest
from mcp_local_provider.core.protocol import ModelSpec, WarmStatus


class BackendError(Exception):
    """A backend failed in a way the editor should hear about; ``code`` is machine-readable."""

    def __init__(self, message: str, code: str = "backend_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Backend(ABC):
    """Serve requests for some models. The client runs ``run`` once per request, as a task
    that is cancelled if the editor goes away; clean up in ``finally``."""

    name: str = "backend"
    #: Features the library emulates around ``run`` because the backend lacks them: any of
    #: "stop" (stop sequences), "max_tokens" (an approximate cap) and "usage" (estimates when
    #: the backend reports none). See ``emulation.emulate``.
    emulated: frozenset[str] = frozenset()

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Get ready before the agent connects (find a binary, list an upstream's models).

        Called once by ``AgentClient.run``; raise BackendError if the backend cannot work.
        """

    @abstractmethod
    def models(self) -> list[ModelSpec]:
        """The models to advertise in ``hello``."""

    @abstractmethod
    def run(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        """Yield the answer as events, ending with ``Finish`` (or ``Embeddings``)."""

    def serve(self, request: InvokeRequest) -> AsyncIterator[BackendEvent]:
        """``run`` with the features in ``emulated`` applied: what the agent sends."""
        events = self.run(request)
        return emulate(request, events, self.emulated) if self.emulated else events

    def pool_status(self) -> WarmStatus | None:
        """The processes started ahead (ready, starting, busy), or None for a backend without
        any; the client reports changes to a daemon that accepts ``agent_status``."""
        return None

    def limit(self, concurrency: int) -> None:  # noqa: B027 - optional hook
        """The agent serves at most ``concurrency`` requests at once (the granted limit)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources when the agent stops."""
