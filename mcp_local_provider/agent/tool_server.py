"""The editor's tools as a stdio MCP server, for an agent CLI to load:
``python -m mcp_local_provider.agent.tool_server [--hold] TOOLS_FILE`` (see ``agent/tools.py``).

It lists the tools in TOOLS_FILE. It never runs one: the backend hands each call to the editor
from the CLI's output and ends the run. Should the CLI still be waiting, the call is answered
with an error saying so, or with ``--hold`` not at all (the run is ended first). Needs the MCP
SDK (the ``mcp`` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from mcp_local_provider.agent.tools import SERVER

HANDED_OVER = "This call was handed to the user's editor, which runs it; end your turn now."


def build(tools: list[dict[str, Any]], hold: bool = False) -> Server[Any]:
    listed = [
        types.Tool(name=t["name"], description=t["description"], input_schema=t["input_schema"])
        for t in tools
    ]

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=listed)

    async def call_tool(ctx: Any, params: Any) -> types.CallToolResult:
        if hold:
            await anyio.sleep_forever()
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=HANDED_OVER)], is_error=True
        )

    return Server(SERVER, on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(tools: list[dict[str, Any]], hold: bool = False) -> None:
    server = build(tools, hold)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    hold = "--hold" in args
    tools = json.loads(Path(args[-1]).read_text())
    anyio.run(serve, tools, hold)


if __name__ == "__main__":
    main()
