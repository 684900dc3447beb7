"""Small pieces the MCP server's parts share."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import suppress

from mcp_local_provider.agent.backend import Backend
from mcp_local_provider.core.protocol import ModelSpec

CAPABILITIES = ("chat", "completion", "fim", "tools", "structured")


class Signal:
    """Wakes everyone waiting at once; waiting again needs a new notify."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, within: float) -> None:
        """Wait for the next notify, at most ``within`` seconds."""
        event = self._event
        with suppress(TimeoutError):
            async with asyncio.timeout(max(within, 0.0)):
                await event.wait()


class ServingBackend(Backend):
    """A backend whose model names are chosen when access is requested."""

    def __init__(self, models: list[str]) -> None:
        self.model_names = list(models)
        #: Why requests are being cancelled en masse right now (the session ended, the
        #: connection dropped), or None; set by whoever owns the agent connection.
        self.why_ending: Callable[[], str | None] = lambda: None

    def models(self) -> list[ModelSpec]:
        # "tools": editors that always send tools (Continue) may use the model; the agent sees
        # which tools were offered but answers in text, as a model that chooses not to call one.
        return [ModelSpec(name=n, capabilities=CAPABILITIES) for n in self.model_names]
