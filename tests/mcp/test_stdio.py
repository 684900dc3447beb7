"""The MCP server as a host starts it: a subprocess over stdio, configured as docs/mcp.md says,
with only the environment MCP hosts pass (HOME, LOGNAME, PATH, SHELL, TERM, USER)."""

from __future__ import annotations

import asyncio
import sys
import sysconfig
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS, stdio_client
from mcp_types import CreateMessageRequestParams, CreateMessageResult, TextContent

from tests.fakes import BRIDGE_TOKEN, Daemon, until
from tests.mcp.test_docs import cursor_server, vscode_servers
from tests.mcp_fakes import call, next_request, wait_status


def home_with_token(tmp_path: Path, token: bool = True) -> Path:
    """A home directory holding the bridge token where the daemon would have put it."""
    home = tmp_path / "home"
    state = home / ".local" / "state" / "mcp-local-provider"
    state.mkdir(parents=True)
    if token:
        (state / "bridge-token").write_text(BRIDGE_TOKEN + "\n")
        (state / "bridge-token").chmod(0o600)
    return home


def installed(command: str, args: list[str]) -> tuple[str, list[str]]:
    """The command as installed here, or the same entry point through this Python."""
    script = Path(sysconfig.get_path("scripts")) / command
    if script.exists():
        return str(script), args
    return sys.executable, ["-m", "mcp_local_provider", *args]


@asynccontextmanager
async def stdio_host(
    daemon: Daemon,
    tmp_path: Path,
    server: dict[str, Any],
    token: bool = True,
    **client_options: Any,
) -> AsyncIterator[Client]:
    port = daemon.url.rsplit(":", 1)[1]
    command, args = installed(server["command"], server["args"])
    # The host's own environment is reduced to DEFAULT_INHERITED_ENV_VARS by the SDK; on top
    # of it, HOME is the test's home and the port is set the way a user sets it, in "env".
    assert set(DEFAULT_INHERITED_ENV_VARS) == {"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"}
    params = StdioServerParameters(
        command=command,
        args=args,
        env={"HOME": str(home_with_token(tmp_path, token)), "MCP_LOCAL_PROVIDER_PORT": port},
        cwd=str(tmp_path),
    )
    # The server's stderr (its logs) goes to a file, kept with the test's tmp_path.
    with (tmp_path / "server.log").open("w") as errlog:
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, mode="legacy", **client_options) as client:
            yield client


async def test_host_from_the_docs_serves_streamed_and_whole_answers_over_stdio(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    editor = openai_client(daemon)
    async with stdio_host(daemon, tmp_path, cursor_server()) as host:
        granted = await call(host, "request_local_provider_access", reason="stdio test")
        assert granted.status == "granted", granted
        pieces: list[str] = []

        async def stream() -> None:
            answer = await editor.chat.completions.create(
                model="mcp-agent", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            async for chunk in answer:
                if chunk.choices:
                    pieces.append(chunk.choices[0].delta.content or "")

        streaming = asyncio.create_task(stream())
        rid = (await next_request(host)).data["request_id"]
        await call(host, "respond_partial", request_id=rid, content="piece one, ")
        await until(lambda: "".join(pieces) == "piece one, ")
        await call(host, "respond", request_id=rid, content="piece two")
        await streaming

        whole = asyncio.create_task(
            editor.chat.completions.create(
                model="mcp-agent", messages=[{"role": "user", "content": "again"}]
            )
        )
        request = await next_request(host)
        assert request.data["messages"][-1]["content"] == "again"
        await call(host, "respond", request_id=request.data["request_id"], content="all at once")
        reply = await whole
    assert "".join(pieces) == "piece one, piece two"
    assert reply.choices[0].message.content == "all at once"
    session = daemon.state.registry.get(granted.data["session_id"])
    assert session.agent_id == "mcp-mcp"  # named after the host's client name


async def test_sampling_host_from_the_docs_answers_over_stdio(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    async def answer(
        context: ClientRequestContext, params: CreateMessageRequestParams
    ) -> CreateMessageResult:
        asked = params.messages[-1].content.text  # type: ignore[union-attr]
        return CreateMessageResult(
            role="assistant",
            content=TextContent(type="text", text=f"host says: {asked}"),
            model="host-model",
        )

    _, sampling = vscode_servers()
    async with stdio_host(daemon, tmp_path, sampling, sampling_callback=answer) as host:
        await wait_status(host, "granted")
        reply = await openai_client(daemon).chat.completions.create(
            model="mcp-agent", messages=[{"role": "user", "content": "ping"}]
        )
    assert reply.choices[0].message.content == "host says: ping"


async def test_missing_token_under_home_is_reported_to_the_agent(
    daemon: Daemon, tmp_path: Path
) -> None:
    async with stdio_host(daemon, tmp_path, cursor_server(), token=False) as host:
        answer = await call(host, "request_local_provider_access")
    assert answer.is_error
    assert "no bridge token at" in answer.text and "mcp-local-provider serve" in answer.text
    assert str(tmp_path / "home" / ".local" / "state") in answer.text
