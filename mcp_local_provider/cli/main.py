"""The command line: parses, loads the config, dispatches to one module per command. Errors
are one line on stderr."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mcp_local_provider import __version__
from mcp_local_provider.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    add_common,
    config_for,
)
from mcp_local_provider.core.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-local-provider",
        description="Serve an approved AI agent to your editor as a local model "
        "(OpenAI, Anthropic and Ollama APIs on http://127.0.0.1:11434).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the daemon", description="Run the daemon.")
    serve.set_defaults(command_parser=serve)
    add_common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 11434)")
    serve.add_argument(
        "--approval",
        choices=["manual", "prompt", "auto"],
        help="how agents are approved (default: prompt on a terminal, else manual)",
    )

    sessions = commands.add_parser(
        "sessions",
        help="list, approve, deny or revoke agent sessions",
        description="List, approve, deny or revoke agent sessions of a running daemon.",
    )
    sessions.set_defaults(command_parser=sessions)
    actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "list sessions"),
        ("approve", "approve a pending session"),
        ("deny", "deny a pending session"),
        ("revoke", "end a session now"),
    ):
        action = actions.add_parser(name, help=text, description=text.capitalize() + ".")
        action.set_defaults(command_parser=action)
        if name != "list":
            action.add_argument("session_id", metavar="ID")
        add_common(action)
        action.add_argument("--url", help="daemon URL (default from the config)")
        action.add_argument("--json", action="store_true", help="print JSON")

    status = commands.add_parser(
        "status",
        help="show a running daemon: uptime, traffic, sessions",
        description="Show a running daemon: version, uptime, recent requests and errors, "
        "and its pending and active sessions.",
    )
    status.set_defaults(command_parser=status)
    add_common(status)
    status.add_argument("--url", help="daemon URL (default from the config)")
    status.add_argument("--json", action="store_true", help="print JSON (one line per refresh)")
    status.add_argument(
        "--watch",
        type=_positive,
        nargs="?",
        const=2.0,
        metavar="SECONDS",
        help="refresh every SECONDS (default 2) until Ctrl-C",
    )

    usage = commands.add_parser(
        "usage",
        help="show requests, tokens, errors and failovers per session, model and day",
        description="Show what each agent session served: requests, errors, input and output "
        "tokens, failovers and time spent cooling down, per day, session label and model. Read "
        "from the usage database in the state directory (kept across restarts); the daemon "
        "need not be running.",
    )
    usage.set_defaults(command_parser=usage)
    add_common(usage)
    usage.add_argument(
        "--since",
        metavar="PERIOD",
        help="how far back: days (7d, the default) or hours (24h), counting today",
    )
    usage.add_argument(
        "--by",
        choices=["day", "session", "model"],
        help="sum the rows by day, session or model (default: one row per day, session, model)",
    )
    usage.add_argument("--json", action="store_true", help="print JSON")
    ui = commands.add_parser(
        "ui",
        help="print a link that logs a browser in to the web page",
        description="Print a one-time link (good for a few minutes) that logs a browser in to "
        "the running daemon's web page at /ui, where agents are approved and usage and live "
        "traffic are shown. The bridge token never reaches the browser.",
    )
    ui.set_defaults(command_parser=ui)
    add_common(ui)
    ui.add_argument("--url", help="daemon URL (default from the config)")
    ui.add_argument("--open", action="store_true", help="open the link in the default browser")

    agent = commands.add_parser(
        "agent",
        help="run an agent that serves requests",
        description="Connect an agent to the daemon, wait for approval, and serve requests.",
    )
    agent.set_defaults(command_parser=agent)
    add_common(agent)
    agent.add_argument(
        "--backend",
        help="backend to serve with: echo, openai, claude, cursor, gemini, codex, or a table "
        "name from [agent.backends] (default from the config: echo)",
    )
    agent.add_argument(
        "--check",
        action="store_true",
        help="run one tiny prompt through the backend (no daemon needed) and report what worked",
    )
    agent.add_argument(
        "--binary", metavar="PATH", help="the agent CLI to run (default: its usual name)"
    )
    agent.add_argument(
        "--base-url",
        metavar="URL",
        help="openai backend: the upstream's base URL, e.g. http://127.0.0.1:8000/v1 (the API key "
        "comes from api_key_env or api_key_file in the config, never from the command line)",
    )
    agent.add_argument("--url", help="agent socket URL (default ws://127.0.0.1:11434/agent)")
    agent.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model name to advertise (repeatable)",
    )
    agent.add_argument("--label", help="label shown to the user when asking for approval")
    agent.add_argument("--agent-id", help="agent id (default: <backend>-<hostname>)")
    agent.add_argument("--ttl", type=float, metavar="SECONDS", help="session lifetime to ask for")
    agent.add_argument(
        "--max-concurrency",
        type=int,
        metavar="N",
        help="requests served at once (default from the config: 4)",
    )
    _mcp_parser(commands)
    return parser


def _mcp_parser(commands: Any) -> None:
    # --config is accepted as everywhere else, with --config-file as its other name: MCP
    # launchers such as the Inspector read --config (and --server, --cwd, --transport, -e)
    # from the server's command line themselves, so in their command lines use --config-file.
    mcp = commands.add_parser(
        "mcp",
        help="run the MCP server that lets an MCP host's agent serve as the model",
        description="Serve MCP over stdin/stdout so that the agent of an MCP host (Cursor, "
        "Claude Code, VS Code, ...) can serve as the local model. Needs the MCP extra: "
        "pip install 'mcp-local-provider[mcp]'. See docs/mcp.md.",
    )
    mcp.set_defaults(command_parser=mcp)
    mcp.add_argument(
        "--sampling",
        action="store_true",
        help="answer requests by asking the host's model (MCP sampling) instead of through "
        "the agent's tool loop; the host must support sampling",
    )
    mcp.add_argument("--url", help="agent socket URL (default ws://127.0.0.1:11434/agent)")
    mcp.add_argument(
        "--token-file", type=Path, metavar="FILE", help="file holding the bridge token"
    )
    mcp.add_argument(
        "--config",
        "--config-file",
        dest="config",
        type=Path,
        metavar="PATH",
        help="TOML config file (--config-file: the spelling MCP launchers leave alone)",
    )
    mcp.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help="model name to advertise when the agent names none (repeatable)",
    )
    mcp.add_argument("--label", help="label shown to the user when asking for approval")
    mcp.add_argument("--ttl", type=float, metavar="SECONDS", help="session lifetime to ask for")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected seconds between 0 and 3600, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # refused with the usage of the command they were given to
        getattr(args, "command_parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    # Each command's module is imported only when it runs, so ``--help`` and light commands
    # start fast (the daemon and the agents pull in aiohttp, pydantic models, backends).
    try:
        if args.command == "serve":
            from mcp_local_provider.cli import serve

            config = config_for(args, host=args.host, port=args.port, approval=args.approval)
            return serve.run(config)
        if args.command == "sessions":
            from mcp_local_provider.cli import sessions

            return asyncio.run(sessions.run(args, config_for(args)))
        if args.command == "status":
            from mcp_local_provider.cli import status

            return asyncio.run(status.run(args, config_for(args)))
        if args.command == "usage":
            from mcp_local_provider.cli import usage

            return usage.run(args, config_for(args))
        if args.command == "ui":
            from mcp_local_provider.cli import ui

            return asyncio.run(ui.run(args, config_for(args)))
        if args.command == "agent":
            from mcp_local_provider.cli import agent

            return agent.main(args, config_for(args))
        if args.command == "mcp":
            from mcp_local_provider.cli import mcp

            return mcp.run(args, config_for(args))
    except ConfigError as exc:
        print(f"mcp-local-provider: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"mcp-local-provider: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (``status --watch | head``): nothing left to say to anyone.
        _silence_stdout()
        return 0
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
