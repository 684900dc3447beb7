"""``mcp-local-provider mcp``: the MCP server for MCP hosts (needs the ``[mcp]`` extra)."""

from __future__ import annotations

import argparse
import asyncio

from mcp_local_provider.cli.common import CliError, http_url
from mcp_local_provider.core.config import Config
from mcp_local_provider.obs.logs import configure


def run(args: argparse.Namespace, config: Config) -> int:
    try:  # imported here: the MCP SDK is an optional extra
        from mcp_local_provider.mcp import server
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != "mcp":
            raise
        raise CliError(
            "`mcp-local-provider mcp` needs the MCP SDK 2.x: pip install 'mcp-local-provider[mcp]'"
        ) from None
    configure(config)  # logs go to stderr; stdout carries the MCP messages
    url = args.url or http_url(config, None).replace("http://", "ws://", 1) + "/agent"
    options = server.Options(
        url=url,
        sampling=args.sampling,
        models=tuple(args.models or ()),
        label=args.label,
        ttl_seconds=args.ttl,
    )
    asyncio.run(server.run_stdio(config, options))
    return 0
