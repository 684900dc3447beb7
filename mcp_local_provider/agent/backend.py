"""The interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator

from ..protocol import ModelSpec
from .events import Event, InvokeRequest


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

    @abstractmethod
    def models(self) -> list[ModelSpec]:
        """The models to advertise in ``hello``."""

    @abstractmethod
    def run(self, request: InvokeRequest) -> AsyncIterator[Event]:
        """Yield the answer as events, ending with ``Finish`` (or ``Embeddings``)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources when the agent stops."""
