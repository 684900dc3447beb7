"""The editor's tools as a stdio MCP server, for an agent CLI to load:
``python -I .../tool_server.py [--hold] TOOLS_FILE`` (see ``agent/tools.py``).

It lists the tools in TOOLS_FILE. It never runs one: the backend hands each call to the editor
from the CLI's output and ends the run. Should the CLI still be waiting, the call is answered
with an error saying so, or with ``--hold`` not at all (the run is ended first), unless the run
holds its turn (``agent/held.py``): then the call waits for the editor's result, which it asks
for on the run's Unix socket next to TOOLS_FILE.

Standard library only, and run as a file rather than as a module of the package, so that it
starts in tens of milliseconds (the MCP SDK's import alone took one to two seconds, paid by
every request that offered tools). It speaks what the CLIs' MCP clients need: newline-delimited
JSON-RPC, ``initialize``, ``tools/list``, ``tools/call`` and ``ping``; any other request is
answered "method not found" (Claude Code then falls back from ``server/discover`` to
``initialize``).
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

SERVER = "editor"
HANDED_OVER = "This call was handed to the user's editor, which runs it; end your turn now."
#: Revisions a client may ask for; another is answered with the newest.
REVISIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")


class ToolServer:
    """Answers one message at a time; ``handle`` returns the reply, or None for none."""

    def __init__(
        self, tools: list[dict[str, Any]], hold: bool = False, results: Path | None = None
    ) -> None:
        self.tools = [
            {"name": t["name"], "description": t["description"], "inputSchema": t["input_schema"]}
            for t in tools
        ]
        self.hold = hold
        self.results = results

    def result(self, params: Any) -> dict[str, Any] | None:
        """The editor's result of a call, asked for on the run's socket; None if the run does
        not hold its turn (no socket) or ends it before the result comes."""
        if self.results is None or not isinstance(params, dict):
            return None
        call = {"name": params.get("name"), "arguments": params.get("arguments") or {}}
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
                channel.connect(str(self.results))
                channel.sendall(json.dumps(call).encode() + b"\n")
                answer = channel.makefile("rb").readline()
            reply = json.loads(answer)
        except (OSError, ValueError):
            return None
        if not isinstance(reply, dict):
            return None
        text = {"type": "text", "text": str(reply.get("text") or "")}
        return {"content": [text], "isError": bool(reply.get("isError"))}

    def handle(self, message: Any) -> dict[str, Any] | None:
        if not isinstance(message, dict) or "method" not in message:
            return None  # a response or garbage: nothing to answer
        if "id" not in message:
            return None  # a notification
        method, params = message["method"], message.get("params") or {}
        result: dict[str, Any]
        if method == "initialize":
            asked = params.get("protocolVersion") if isinstance(params, dict) else None
            result = {
                "protocolVersion": asked if asked in REVISIONS else REVISIONS[-1],
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": SERVER, "version": "1"},
            }
        elif method == "tools/list":
            result = {"tools": self.tools}
        elif method == "tools/call":
            if self.hold:
                held = self.result(params)
                if held is None:
                    return None  # never answered: the run ends first
                return {"jsonrpc": "2.0", "id": message["id"], "result": held}
            text = {"type": "text", "text": HANDED_OVER}
            result = {"content": [text], "isError": True}
        elif method == "ping":
            result = {}
        else:
            error = {"code": -32601, "message": f"method not found: {method}"}
            return {"jsonrpc": "2.0", "id": message["id"], "error": error}
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def serve(server: ToolServer) -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
        except ValueError:
            continue
        reply = server.handle(message)
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    tools = json.loads(Path(args[-1]).read_text())
    results = Path(args[-1]).parent / "results.sock"
    serve(ToolServer(tools, hold="--hold" in args, results=results))


if __name__ == "__main__":
    main()
