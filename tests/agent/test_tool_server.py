"""The stdlib MCP server that offers the editor's tools to a CLI (agent/tool_server.py): what it
answers to each message, and that it runs as a file with nothing but the standard library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mcp_local_provider.agent.tool_server import HANDED_OVER, ToolServer
from mcp_local_provider.agent.tools import EditorTools

TOOL = {
    "name": "get_weather",
    "description": "The weather.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_initialize_answers_the_revision_the_client_asked_for_or_the_newest() -> None:
    server = ToolServer([TOOL])
    asked = server.handle(
        {"id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
    )
    assert asked is not None and asked["result"]["protocolVersion"] == "2025-06-18"
    assert asked["result"]["capabilities"] == {"tools": {"listChanged": False}}
    unknown = server.handle(
        {"id": 2, "method": "initialize", "params": {"protocolVersion": "1999"}}
    )
    assert unknown is not None and unknown["result"]["protocolVersion"] == "2025-11-25"


def test_tools_are_listed_with_their_json_schemas() -> None:
    reply = ToolServer([TOOL]).handle({"id": 3, "method": "tools/list"})
    assert reply == {
        "jsonrpc": "2.0",
        "id": 3,
        "result": {
            "tools": [
                {
                    "name": "get_weather",
                    "description": "The weather.",
                    "inputSchema": TOOL["input_schema"],
                }
            ]
        },
    }


def test_a_call_is_never_run_but_answered_as_handed_over_or_held() -> None:
    call = {"id": 4, "method": "tools/call", "params": {"name": "get_weather", "arguments": {}}}
    reply = ToolServer([TOOL]).handle(call)
    assert reply is not None
    assert reply["result"] == {"content": [{"type": "text", "text": HANDED_OVER}], "isError": True}
    assert ToolServer([TOOL], hold=True).handle(call) is None


def test_unknown_requests_are_refused_and_notifications_get_no_answer() -> None:
    server = ToolServer([TOOL])
    reply = server.handle({"id": 5, "method": "server/discover"})
    assert reply is not None and reply["error"]["code"] == -32601
    assert server.handle({"method": "notifications/initialized"}) is None
    assert server.handle({"id": 6, "result": {}}) is None


def test_the_server_runs_as_a_file_in_isolated_mode(tmp_path: Path) -> None:
    tools = EditorTools((TOOL,), required=False, named=None, parallel=True, folder=tmp_path)
    tools.tools_file.write_text(json.dumps([TOOL]))
    command = tools.server_command()
    assert command[:2] == [sys.executable, "-I"]
    messages = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    done = subprocess.run(
        command,
        input="".join(json.dumps(m) + "\n" for m in messages),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in replies] == [1, 2]
    assert replies[1]["result"]["tools"][0]["name"] == "get_weather"
