"""Reading a daemon's metrics in tests, through the registry its app owns."""

from __future__ import annotations

from typing import Any

from tests.fakes import Daemon, RawAgent

P = "mcp_local_provider_"


class Meter:
    """``meter(name, **labels)``: a sample's current value (0 when the series is absent)."""

    def __init__(self, daemon: Daemon) -> None:
        self.registry = daemon.state.metrics.registry

    def __call__(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(P + name, labels)
        return 0.0 if value is None else value


async def granted_raw_agent(agent: RawAgent, **hello: Any) -> str:
    """Say hello on an auto-approving daemon; return the session id once granted."""
    pending = await agent.hello(**hello)
    assert pending["type"] == "session_pending", pending
    granted = await agent.recv()
    assert granted["type"] == "session_granted", granted
    return str(granted["session_id"])


CHAT = "/v1/chat/completions"


def chat(model: str = "raw", stream: bool = False, text: str = "hi") -> dict[str, Any]:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": text}]}
