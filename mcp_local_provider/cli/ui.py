"""``mcp-local-provider ui``: a one-time link that logs a browser in to the daemon's web page.

The bridge token stays here: the daemon exchanges it for a short-lived code, and the link
carries only that code (see docs/security.md)."""

from __future__ import annotations

import argparse
import json
import sys
import webbrowser
from typing import TextIO

import aiohttp

from mcp_local_provider.cli.common import CliError, bridge_token, http_url
from mcp_local_provider.core.addresses import unreachable
from mcp_local_provider.core.config import Config


async def run(args: argparse.Namespace, config: Config, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    token = bridge_token(config)
    base = http_url(config, args.url)
    link, lifetime = await login_link(base, token)
    minutes = f"{lifetime / 60:g} minute" + ("" if lifetime == 60 else "s")
    print(f"Log in to the web page with this link (it works once, within {minutes}):", file=out)
    print(f"  {link}", file=out)
    if args.open and not webbrowser.open(link):
        print("(no browser could be opened here: open the link yourself)", file=out)
    return 0


async def login_link(base: str, token: str) -> tuple[str, float]:
    """A fresh login link from the daemon at ``base``, and how many seconds it stays good."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
            http.post(
                base + "/control/ui/login", headers={"Authorization": f"Bearer {token}"}
            ) as r,
        ):
            body = await r.json(content_type=None)
            status = r.status
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
        raise CliError(unreachable(base, exc)) from None
    if status == 404:
        raise CliError(f"the daemon at {base} serves no web page (ui = false in its config)")
    if status >= 400 or not isinstance(body, dict) or "path" not in body:
        error = body.get("error") if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else error
        raise CliError(f"could not get a login link ({status}): {message or body}")
    return base + body["path"], float(body.get("expires_in") or 0)
