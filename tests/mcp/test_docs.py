"""The host configurations in docs/mcp.md parse, and start the server they claim to start."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from mcp_local_provider.cli.main import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "mcp.md"
# Flags MCP launchers (the Inspector) read from a server's command line themselves.
LAUNCHER_FLAGS = {"--config", "--server", "--cwd", "--transport", "-e"}


def snippets(marker: str) -> list[str]:
    """Every fenced block that follows a line mentioning ``marker`` (before the next block)."""
    found, armed, lines = [], False, DOC.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            end = lines.index("```", index + 1)
            if armed:
                found.append("\n".join(lines[index + 1 : end]))
            armed, index = False, end + 1
            continue
        if marker in line:
            armed = True
        index += 1
    return found


def cursor_server() -> dict[str, Any]:
    [text] = snippets(".cursor/mcp.json")
    return dict(json.loads(text)["mcpServers"]["local-provider"])


def vscode_servers() -> list[dict[str, Any]]:
    return [json.loads(text)["servers"]["local-provider"] for text in snippets(".vscode/mcp.json")]


def claude_argv() -> list[str]:
    [text] = snippets("### Claude Code")
    return shlex.split(text)


def assert_starts_the_mcp_server(command: str, args: list[str]) -> None:
    assert command == "mcp-local-provider"
    assert not LAUNCHER_FLAGS & set(args)
    parsed = build_parser().parse_args(args)
    assert parsed.command == "mcp"


def test_cursor_snippet_starts_the_mcp_server() -> None:
    server = cursor_server()
    assert_starts_the_mcp_server(server["command"], server["args"])


def test_vscode_snippets_start_the_server_in_tools_and_sampling_mode() -> None:
    tools, sampling = vscode_servers()
    for server in (tools, sampling):
        assert server["type"] == "stdio"
        assert_starts_the_mcp_server(server["command"], server["args"])
    assert build_parser().parse_args(tools["args"]).sampling is False
    assert build_parser().parse_args(sampling["args"]).sampling is True


def test_claude_code_command_adds_the_mcp_server() -> None:
    argv = claude_argv()
    assert argv[:4] == ["claude", "mcp", "add", "local-provider"]
    command = argv[argv.index("--") + 1 :]
    assert_starts_the_mcp_server(command[0], command[1:])


def test_mcp_command_offers_every_setting_under_a_name_launchers_leave_alone() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command")
    mcp = subcommands.choices["mcp"]  # type: ignore[index]
    flags = {flag for action in mcp._actions for flag in action.option_strings}
    # --config is accepted too, as on every other command; --config-file is its other name,
    # the one to write under a launcher that takes --config for itself.
    assert not flags & (LAUNCHER_FLAGS - {"--config"})
    assert {"--sampling", "--url", "--token-file", "--config-file"} <= flags


def test_doc_lists_every_tool_and_setting() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in (
        "request_local_provider_access(scopes, reason, ttl_seconds, models)",
        "next_request(wait_seconds)",
        "respond(request_id, content, finish_reason)",
        "respond_partial(request_id, content)",
        "decline(request_id, reason)",
        "provider_status()",
        "release_access()",
        "mcp_models",
        "mcp_wait_limit",
        "mcp_sampling_max_tokens",
    ):
        assert name in text
    assert re.search(r"deprecated\*\* in the newest MCP revision", text)
