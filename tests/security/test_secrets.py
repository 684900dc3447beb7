"""Secrets never leak: a canary prompt and canary credentials (bridge token, API key, session
token, a wrong token, credentials in a URL, a malformed request line) are pushed through the
real daemon, then looked for in its logs, its audit files and every error or status body."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from structlog.testing import capture_logs

from mcp_local_provider.agent import AgentClient
from mcp_local_provider.agent.backends.echo import EchoBackend
from mcp_local_provider.policy.tokens import fingerprint
from tests.fakes import wait_for
from tests.security.helpers import raw_exchange, raw_request

CANARY_PROMPT = "canary-prompt-4be1d0 tell nobody"
CANARY_BRIDGE = "canary-bridge-token-9f27c3a1"
CANARY_KEY = "canary-api-key-71d0e5"
CANARY_WRONG = "canary-wrong-token-33aa01"
CANARY_QUERY = "canary-query-secret-5c5c"
CANARY_LINE = "canary-bad-line-0e0e"


async def test_canaries_appear_in_no_log_audit_file_or_error_body(
    daemon_process: Any, tmp_path: Path
) -> None:
    daemon = await daemon_process(bridge_token=CANARY_BRIDGE, api_keys=CANARY_KEY, approval="auto")
    key = {"Authorization": f"Bearer {CANARY_KEY}"}
    bodies: list[str] = []
    with capture_logs() as agent_logs:
        agent = AgentClient(
            daemon.url.replace("http", "ws") + "/agent", CANARY_BRIDGE, EchoBackend(),
            agent_id="canary-agent", backoff_initial=0.02,
        )  # fmt: skip
        task = asyncio.create_task(agent.run())
        await wait_for(agent.wait_ready(), task)
        session_token = agent.session_token
        assert session_token
        async with aiohttp.ClientSession() as http:
            chat = {"model": "echo", "messages": [{"role": "user", "content": CANARY_PROMPT}]}
            for stream in (False, True):
                async with http.post(
                    daemon.url + "/v1/chat/completions",
                    json={**chat, "stream": stream},
                    headers=key,
                ) as response:
                    assert response.status == 200
                    assert CANARY_PROMPT.split()[0] in await response.text()  # the echo, by design
            # Errors of every kind, with the canaries in the places they might be echoed from.
            attempts: list[tuple[str, str, dict[str, str], Any]] = [
                ("POST", "/v1/chat/completions", {}, chat),  # no key
                ("POST", "/v1/chat/completions", {"Authorization": f"Bearer {CANARY_WRONG}"}, chat),
                ("POST", "/v1/chat/completions", key, {**chat, "model": CANARY_PROMPT}),
                ("POST", "/v1/chat/completions", key, {**chat, "temperature": CANARY_PROMPT}),
                ("POST", "/v1/chat/completions", {**key, "X-MCP-Session": session_token}, chat),
                ("GET", f"/v1/models?api_key={CANARY_QUERY}", key, None),
                ("GET", f"/agent?token={CANARY_QUERY}", {}, None),
                ("GET", "/control/sessions", {"Authorization": f"Bearer {CANARY_WRONG}"}, None),
                ("GET", "/control/sessions", {"Authorization": f"Bearer {CANARY_BRIDGE}"}, None),
                ("GET", "/health", {}, None),
                ("GET", "/health/deep", {}, None),
                ("GET", "/metrics", key, None),
            ]
            for method, path, headers, body in attempts:
                async with http.request(
                    method, daemon.url + path, headers=headers, json=body
                ) as response:
                    bodies.append(await response.text())
            # A hello carrying a forged session token.
            ws = await http.ws_connect(
                daemon.url.replace("http", "ws") + "/agent",
                headers={"Authorization": f"Bearer {CANARY_BRIDGE}"},
            )
            await ws.send_str(json.dumps({"type": "hello", "agent_id": "x",
                                          "session_token": CANARY_WRONG}))  # fmt: skip
            async for _ in ws:
                pass
        # Request lines aiohttp cannot parse, quoting a secret in the query. aiohttp answers
        # them itself with a 400 that may quote the line back to its sender (who wrote it);
        # what matters is that it is not logged.
        bad = f"GET /v1/models?token={CANARY_LINE} HTTP/1.1 junk\r\nHost: 127.0.0.1\r\n\r\n"
        assert (await raw_exchange(daemon.port, bad.encode())).startswith(b"HTTP/1.0 400")
        garbled = await raw_request(daemon.port, "GE\x01T", f"/?key={CANARY_LINE}")
        assert garbled.status == 400
        await agent.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await daemon.stop()

    logs = daemon.log_text()
    assert "listening" in logs and "bridge_token_rejected" in logs  # the logs are really there
    assert fingerprint(CANARY_WRONG) in logs  # a wrong token is named by its fingerprint only
    audit_files = sorted(daemon.state_dir.glob("audit.jsonl*"))
    audit = "".join(path.read_text() for path in audit_files)
    assert '"event":"request"' in audit
    places = {
        "daemon log": logs,
        "audit log": audit,
        "agent log": repr(agent_logs),
        "response bodies": "\n".join(bodies),
    }
    secrets = {
        "prompt": CANARY_PROMPT.split()[0],
        "bridge token": CANARY_BRIDGE,
        "API key": CANARY_KEY,
        "session token": session_token,
        "wrong token": CANARY_WRONG,
        "query secret": CANARY_QUERY,
        "request line secret": CANARY_LINE,
    }
    leaks = [
        f"{what} in {where}"
        for where, text in places.items()
        for what, secret in secrets.items()
        if secret in text
    ]
    assert leaks == []
