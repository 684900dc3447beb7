"""``mcp-local-provider sessions``: list, approve, deny or revoke a running daemon's sessions."""

from __future__ import annotations

import argparse
import json

import aiohttp

from mcp_local_provider.cli.common import CliError, bridge_token, http_url, session_table
from mcp_local_provider.core.addresses import unreachable
from mcp_local_provider.core.config import Config


async def run(args: argparse.Namespace, config: Config) -> int:
    token = bridge_token(config)
    base = http_url(config, args.url)
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
        raise CliError(unreachable(base, exc)) from None
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        raise CliError(f"{args.action} failed ({status}): {message or body}")
    if args.json:
        print(json.dumps(body, indent=2))
    elif args.action == "list":
        print(session_table(body.get("sessions", [])))
    else:
        session = body["session"]
        print(f"{session['session_id']} is now {session['state']}")
    return 0
