"""Helpers for the MCP server's tests: the official SDK's client plays the MCP host."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import CallToolResult, TextContent

from mcp_local_provider.core.config import Config
from mcp_local_provider.mcp.server import Options, build_server
from tests.fakes import Daemon, make_config


def mcp_config(tmp_path: Path, **overrides: Any) -> Config:
    overrides.setdefault("mcp_wait_limit", 2.0)
    return make_config(tmp_path, **overrides)


@asynccontextmanager
async def mcp_host(
    daemon: Daemon,
    tmp_path: Path,
    *,
    sampling: bool = False,
    mode: str = "legacy",
    options: dict[str, Any] | None = None,
    **client_options: Any,
) -> AsyncIterator[Client]:
    """The MCP server in memory, with the SDK's client as its host."""
    config_overrides = client_options.pop("config", {})
    options = dict(options or {})
    options.setdefault("url", daemon.ws_url)
    server = build_server(
        mcp_config(tmp_path, **config_overrides), Options(sampling=sampling, **options)
    )
    async with Client(server, mode=mode, **client_options) as client:
        yield client


@dataclass
class Answer:
    text: str
    data: dict[str, Any]
    is_error: bool

    @property
    def status(self) -> str | None:
        return self.data.get("status")


def answer_of(result: CallToolResult) -> Answer:
    text = "".join(c.text for c in result.content if isinstance(c, TextContent))
    return Answer(text, dict(result.structured_content or {}), bool(result.is_error))


async def call(client: Client, tool: str, **arguments: Any) -> Answer:
    return answer_of(await client.call_tool(tool, arguments))


async def wait_status(client: Client, status: str, within: float = 5.0) -> Answer:
    """Poll provider_status until the session reaches ``status``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while True:
        answer = await call(client, "provider_status")
        if answer.status == status:
            return answer
        if loop.time() > end:
            raise AssertionError(f"status stayed {answer.status!r}: {json.dumps(answer.data)}")
        await asyncio.sleep(0.01)


async def next_request(client: Client, wait_seconds: float = 2.0) -> Answer:
    """The next request, asserting one came."""
    answer = await call(client, "next_request", wait_seconds=wait_seconds)
    assert answer.status == "request", answer
    return answer
