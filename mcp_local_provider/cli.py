"""The command line: parses, loads the config, dispatches. Errors are one line on stderr."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, ConfigError, load_config

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """A failure to report as one line on stderr."""


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="PATH", help="TOML config file")
    parser.add_argument(
        "--token-file", type=Path, metavar="FILE", help="file holding the bridge token"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcp-local-provider",
        description="Serve an approved AI agent to your editor as a local model "
        "(OpenAI and Ollama APIs on http://127.0.0.1:11434).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="run the daemon", description="Run the daemon.")
    _common(serve)
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
    actions = sessions.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "list sessions"),
        ("approve", "approve a pending session"),
        ("deny", "deny a pending session"),
        ("revoke", "end a session now"),
    ):
        action = actions.add_parser(name, help=text, description=text.capitalize() + ".")
        if name != "list":
            action.add_argument("session_id", metavar="ID")
        _common(action)
        action.add_argument("--url", help="daemon URL (default from the config)")
        action.add_argument("--json", action="store_true", help="print JSON")

    status = commands.add_parser(
        "status",
        help="show a running daemon: uptime, traffic, sessions",
        description="Show a running daemon: version, uptime, recent requests and errors, "
        "and its pending and active sessions.",
    )
    _common(status)
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

    agent = commands.add_parser(
        "agent",
        help="run an agent that serves requests",
        description="Connect an agent to the daemon, wait for approval, and serve requests.",
    )
    _common(agent)
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
    # No --config, --server, --cwd, --transport or -e: MCP launchers such as the Inspector
    # read those from the server's command line themselves.
    mcp = commands.add_parser(
        "mcp",
        help="run the MCP server that lets an MCP host's agent serve as the model",
        description="Serve MCP over stdin/stdout so that the agent of an MCP host (Cursor, "
        "Claude Code, VS Code, ...) can serve as the local model. Needs the MCP extra: "
        "pip install 'mcp-local-provider[mcp]'. See docs/mcp.md.",
    )
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
        "--config-file", dest="config", type=Path, metavar="PATH", help="TOML config file"
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


def _config(args: argparse.Namespace, **flags: Any) -> Config:
    overrides = {"token_file": getattr(args, "token_file", None), **flags}
    return load_config(args.config, overrides=overrides)


def _http_url(config: Config, url: str | None) -> str:
    from .server import base_url

    return (url or base_url(config.host, config.port)).rstrip("/")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            config = _config(args, host=args.host, port=args.port, approval=args.approval)
            from .logs import configure

            configure(config)
            from .server import serve

            return asyncio.run(serve(config))
        if args.command == "sessions":
            return asyncio.run(_sessions(args, _config(args)))
        if args.command == "status":
            from .status import run

            return asyncio.run(run(args, _config(args)))
        if args.command == "agent":
            config = _config(args)
            from .logs import configure

            configure(config)
            return asyncio.run(_agent(args, config))
        if args.command == "mcp":
            return _mcp(args, _config(args))
    except ConfigError as exc:
        print(f"mcp-local-provider: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"mcp-local-provider: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


# -- sessions --------------------------------------------------------------------------------


async def _sessions(args: argparse.Namespace, config: Config) -> int:
    import aiohttp

    from .tokens import TokenError, read_existing

    try:
        token = read_existing(config)
    except TokenError as exc:
        raise CliError(str(exc)) from None
    base = _http_url(config, args.url)
    if args.action == "list":
        method, path = "GET", "/control/sessions"
    else:
        method, path = "POST", f"/control/sessions/{args.session_id}/{args.action}"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.request(method, base + path, headers={"Authorization": f"Bearer {token}"}) as r,
        ):
            body = await r.json(content_type=None)
            status = r.status
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        raise CliError(f"cannot reach the daemon at {base}: {exc or type(exc).__name__}") from None
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        raise CliError(f"{args.action} failed ({status}): {message or body}")
    if args.json:
        print(json.dumps(body, indent=2))
    elif args.action == "list":
        print(_table(body.get("sessions", [])))
    else:
        session = body["session"]
        print(f"{session['session_id']} is now {session['state']}")
    return 0


def _table(sessions: list[dict[str, Any]]) -> str:
    if not sessions:
        return "no sessions"
    header = ("SESSION", "STATE", "AGENT", "LABEL", "MODELS", "EXPIRES IN", "REQUESTS", "IN FLIGHT")
    rows = [header]
    for s in sessions:
        expires = s.get("expires_in")
        rows.append(
            (
                s["session_id"],
                s["state"] + ("" if s.get("connected") or s["state"] != "active" else " (away)"),
                s["agent_id"],
                (s.get("label") or "")[:30],
                ",".join(s.get("models") or []),
                "-" if expires is None else f"{int(expires)}s",
                f"{s['requests']}/{s['max_requests']}",
                f"{s['in_flight']}/{s['max_concurrency']}",
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


# -- agent -----------------------------------------------------------------------------------


def _scopes_for(backend: Any) -> tuple[str, ...]:
    """Ask for the embeddings scope only when the backend serves an embedding model."""
    serves_embeddings = any("embedding" in m.capabilities for m in backend.models())
    return ("inference", "embeddings") if serves_embeddings else ("inference",)


async def _agent(args: argparse.Namespace, config: Config) -> int:
    from .agent import AgentClient, AgentRefused, BackendError
    from .agent.backends import create
    from .tokens import TokenError, read_existing

    name = args.backend or config.agent.backend
    settings = config.agent.settings_for(name)
    flags = {"binary": args.binary, "base_url": args.base_url}
    settings = settings.model_copy(update={k: v for k, v in flags.items() if v is not None})
    try:
        backend = create(name, models=args.models, settings=settings)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.check:
        from .agent.check import check

        try:
            works = await check(backend, lambda line: print(line, flush=True))
        finally:
            await backend.close()
        return 0 if works else EXIT_ERROR
    try:
        token = read_existing(config)
    except TokenError as exc:
        raise CliError(str(exc)) from None
    http_url = _http_url(config, None)
    url = args.url or http_url.replace("http://", "ws://", 1) + "/agent"
    _refuse_loop(settings.base_url, url)
    try:
        await backend.start()
    except BackendError as exc:
        await backend.close()
        raise CliError(f"the {name} backend cannot start: {exc.message}") from None
    agent_id = args.agent_id or f"{name}-{socket.gethostname().split('.')[0]}"[:128]

    def pending(frame: dict[str, Any]) -> None:
        print(
            f"Waiting for approval of {frame['session_id']}. Approve it with:\n"
            f"  {frame['approve_with']}",
            file=sys.stderr,
            flush=True,
        )

    def granted(frame: dict[str, Any]) -> None:
        print(
            f"Approved: serving {', '.join(frame.get('models') or [])} as {frame['session_id']} "
            f"until {frame.get('expires_at')}",
            file=sys.stderr,
            flush=True,
        )

    client = AgentClient(
        url,
        token,
        backend,
        agent_id=agent_id,
        label=args.label or f"{name} agent on {socket.gethostname()}",
        scopes=_scopes_for(backend),
        ttl_seconds=args.ttl,
        max_concurrency=args.max_concurrency or config.agent.max_concurrency,
        on_pending=pending,
        on_granted=granted,
    )
    started = time.monotonic()
    try:
        reason = await client.run()
    except AgentRefused as exc:
        raise CliError(str(exc)) from None
    except BackendError as exc:
        raise CliError(f"the {name} backend cannot start: {exc.message}") from None
    finally:
        await backend.close()
    print(
        f"Session ended ({reason}) after {time.monotonic() - started:.0f} s.",
        file=sys.stderr,
    )
    return 0


def _refuse_loop(base_url: str | None, agent_url: str) -> None:
    """An openai upstream that is this very daemon would send each request back to itself."""
    if not base_url:
        return
    from urllib.parse import urlsplit

    def where(url: str) -> tuple[str, int | None]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        return ("127.0.0.1" if host == "localhost" else host), parts.port

    if where(base_url) == where(agent_url):
        raise CliError(
            f"--base-url {base_url} is the daemon this agent connects to: requests would loop; "
            "point it at another server"
        )


# -- mcp -------------------------------------------------------------------------------------


def _mcp(args: argparse.Namespace, config: Config) -> int:
    try:
        from .mcp import server
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != "mcp":
            raise
        raise CliError(
            "`mcp-local-provider mcp` needs the MCP SDK 2.x: pip install 'mcp-local-provider[mcp]'"
        ) from None
    from .logs import configure

    configure(config)  # logs go to stderr; stdout carries the MCP messages
    url = args.url or _http_url(config, None).replace("http://", "ws://", 1) + "/agent"
    options = server.Options(
        url=url,
        sampling=args.sampling,
        models=tuple(args.models or ()),
        label=args.label,
        ttl_seconds=args.ttl,
    )
    asyncio.run(server.run_stdio(config, options))
    return 0
