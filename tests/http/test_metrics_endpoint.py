"""``GET /metrics``: valid exposition (prometheus-client's own parser, and ``promtool`` when it
is installed), the documented families, and label values that stay within bounded sets."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import Daemon
from tests.readings import CHAT, chat

#: Every family docs/operations.md documents, with its type.
DOCUMENTED = {
    "mcp_local_provider_build_info": "gauge",
    "mcp_local_provider_start_time_seconds": "gauge",
    "mcp_local_provider_requests": "counter",
    "mcp_local_provider_request_duration_seconds": "histogram",
    "mcp_local_provider_requests_in_flight": "gauge",
    "mcp_local_provider_requests_cancelled": "counter",
    "mcp_local_provider_relay_overhead_seconds": "histogram",
    "mcp_local_provider_relay_calls": "counter",
    "mcp_local_provider_relay_calls_in_flight": "gauge",
    "mcp_local_provider_time_to_first_token_seconds": "histogram",
    "mcp_local_provider_agent_duration_seconds": "histogram",
    "mcp_local_provider_queue_wait_seconds": "histogram",
    "mcp_local_provider_stream_chunks": "counter",
    "mcp_local_provider_prompt_tokens": "counter",
    "mcp_local_provider_completion_tokens": "counter",
    "mcp_local_provider_timeouts": "counter",
    "mcp_local_provider_rejected": "counter",
    "mcp_local_provider_session_events": "counter",
    "mcp_local_provider_agent_connections_closed": "counter",
    "mcp_local_provider_audit_write_failures": "counter",
    "mcp_local_provider_sessions": "gauge",
    "mcp_local_provider_agents_connected": "gauge",
    "mcp_local_provider_dropped_frames": "counter",
    "mcp_local_provider_failovers": "counter",
    "mcp_local_provider_session_cooling_seconds": "gauge",
    "process_cpu_seconds": "counter",
    "process_resident_memory_bytes": "gauge",
    "python_info": "gauge",
}


async def scrape(daemon: Daemon, http: aiohttp.ClientSession, **headers: str) -> str:
    async with http.get(daemon.url + "/metrics", headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith(
            headers.get("Accept", "text/plain").split(";")[0]
        )
        return await response.text()


async def some_traffic(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    """An answered chat (stream and not), a refused one, and a request to no route."""
    for stream in (False, True):
        async with http.post(daemon.url + CHAT, json=chat("echo", stream, "a b")) as response:
            assert response.status == 200
            await response.read()
    async with http.post(daemon.url + CHAT, data=b"[") as response:
        assert response.status == 400
    async with http.get(daemon.url + "/wp-admin/setup-config-8891.php?x=1") as response:
        assert response.status == 404


async def test_metrics_parse_with_the_prometheus_parser_and_match_the_reference(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await some_traffic(echo_daemon, http)
    families = {f.name: f for f in text_string_to_metric_families(await scrape(echo_daemon, http))}
    for name, kind in DOCUMENTED.items():
        assert name in families, name
        assert families[name].type == kind, name
    ours = [name for name in families if name.startswith("mcp_local_provider_")]
    assert sorted(ours) == sorted(n for n in DOCUMENTED if n.startswith("mcp_local_provider_"))
    requests = families["mcp_local_provider_requests"]
    answered = [
        s
        for s in requests.samples
        if s.labels["route"] == CHAT and s.labels["status"] == "200" and s.name.endswith("_total")
    ]
    assert [(s.labels["model"], s.value) for s in answered] == [("echo", 2.0)]
    build = families["mcp_local_provider_build_info"].samples[0]
    assert build.labels["version"] and build.value == 1


async def test_label_values_never_echo_paths_or_unknown_models(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await some_traffic(echo_daemon, http)
    async with http.post(echo_daemon.url + CHAT, json=chat("secret-model-9137", False)) as r:
        assert r.status == 404
    text = await scrape(echo_daemon, http)
    assert "wp-admin" not in text and "secret-model-9137" not in text
    routes = {
        s.labels["route"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if "route" in s.labels
    }
    registered = {r.canonical for r in echo_daemon.app.router.resources()}
    assert routes <= registered | {"unmatched"}
    assert "unmatched" in routes


async def test_openmetrics_is_served_when_the_scraper_asks_for_it(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    text = await scrape(daemon, http, Accept="application/openmetrics-text; version=1.0.0")
    assert text.rstrip().endswith("# EOF")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_promtool_check_metrics_finds_no_problem(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    await some_traffic(echo_daemon, http)
    text = await scrape(echo_daemon, http)

    def check() -> Any:
        return subprocess.run(
            ["promtool", "check", "metrics"],
            input=text.encode(),
            capture_output=True,
            timeout=30,
            check=False,
        )

    result = await asyncio.to_thread(check)
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    assert result.stdout.decode().strip() == "" and result.stderr.decode().strip() == ""
