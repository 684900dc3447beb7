"""Test helpers: a daemon on a loopback port, real agents, and a raw WebSocket peer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from mcp_local_provider.agent import AgentClient, Backend
from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.core.config import Config
from mcp_local_provider.http.state import STATE, State

BRIDGE_TOKEN = "test-bridge-token-0123456789"

# Small timeouts so failure paths finish fast; each test may override any of them.
FAST = {
    "hello_timeout": 2.0,
    "approval_timeout": 5.0,
    "reconnect_grace": 0.3,
    "first_chunk_timeout": 5.0,
    "idle_timeout": 5.0,
    "total_timeout": 10.0,
    "sweep_interval": 0.05,
    "shutdown_grace": 1.0,
    "heartbeat": 5.0,
}


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = {
        "bridge_token": BRIDGE_TOKEN,
        "state_dir": tmp_path / "state",
        **FAST,
        **overrides,
    }
    return Config.model_validate(values)


@dataclass
class Daemon:
    server: TestServer
    app: web.Application
    token: str = BRIDGE_TOKEN
    agents: list[tuple[AgentClient, asyncio.Task[str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/agent"

    @property
    def state(self) -> State:
        return self.app[STATE]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def start_agent(
        self,
        backend: Backend | None = None,
        *,
        wait: bool = True,
        **options: Any,
    ) -> tuple[AgentClient, asyncio.Task[str]]:
        """A real agent (the library's AgentClient) connected to this daemon."""
        options.setdefault("agent_id", "test-agent")
        options.setdefault("label", "Test agent")
        options.setdefault("backoff_initial", 0.02)
        client = AgentClient(self.ws_url, self.token, backend or EchoBackend(), **options)
        task = asyncio.create_task(client.run())
        self.agents.append((client, task))
        if wait:
            await wait_for(client.wait_ready(), task)
        return client, task

    async def stop_agents(self) -> None:
        for client, task in self.agents:
            await client.stop()
            task.cancel()
            with suppress(BaseException):
                await task


async def wait_for(ready: Awaitable[None], task: asyncio.Task[Any], timeout: float = 5) -> None:
    """Wait for ``ready``, failing fast with the agent's error if its task dies first."""
    waiter = asyncio.ensure_future(ready)
    done, _ = await asyncio.wait({waiter, task}, timeout=timeout, return_when="FIRST_COMPLETED")
    if waiter not in done:
        waiter.cancel()
        if task in done:
            task.result()  # raises the agent's error
            raise AssertionError(f"agent stopped early: {task.result()!r}")
        raise AssertionError("agent not ready in time")


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition every few milliseconds (used instead of fixed sleeps)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class RawAgent:
    """A hand-driven WebSocket peer, for agents that misbehave."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
        return json.loads(msg.data)

    async def hello(self, **fields: Any) -> dict[str, Any]:
        frame = {
            "type": "hello",
            "protocol": 1,
            "agent_id": "raw-agent",
            "label": "Raw agent",
            "models": ["raw"],
            "requested_scopes": ["inference"],
            **fields,
        }
        await self.send(frame)
        return await self.recv()

    async def closed(self, timeout: float = 5) -> int | None:
        """Read until the daemon closes; return its close code."""
        while True:
            msg = await self.ws.receive(timeout=timeout)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
            ):
                return self.ws.close_code
            if msg.type is aiohttp.WSMsgType.ERROR:
                return self.ws.close_code
