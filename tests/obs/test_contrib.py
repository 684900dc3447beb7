"""The files in contrib/: the Grafana dashboard charts metrics that exist (and every one of
ours), its queries are valid PromQL, the Prometheus config and the systemd unit are sound."""

from __future__ import annotations

import asyncio
import configparser
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mcp_local_provider.core.config import ENV_PREFIX, Config
from tests.fakes import Daemon

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
DASHBOARD = CONTRIB / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\b((?:mcp_local_provider|process|python)_[a-z0-9_]+)\b")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def dashboard() -> dict[str, Any]:
    with open(DASHBOARD, encoding="utf-8") as fh:
        loaded: dict[str, Any] = json.load(fh)
    return loaded


def queries(board: dict[str, Any]) -> Iterator[str]:
    def walk(panels: list[dict[str, Any]]) -> Iterator[str]:
        for panel in panels:
            for target in panel.get("targets", []):
                yield target["expr"]
            yield from walk(panel.get("panels", []))

    yield from walk(board["panels"])
    for variable in board["templating"]["list"]:
        yield variable["definition"]


async def exposed_names(daemon: Daemon, http: aiohttp.ClientSession) -> dict[str, str]:
    """Every sample name ``/metrics`` can carry, with its family, from the families declared."""
    async with http.get(daemon.url + "/metrics") as response:
        text = await response.text()
    names = {}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            names[family.name + suffix] = family.name
    return names


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    board = dashboard()
    assert board["title"] and board["uid"] and board["schemaVersion"] >= 36
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]


async def test_dashboard_queries_name_only_metrics_that_exist_and_chart_all_of_ours(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    exposed = await exposed_names(daemon, http)
    charted = {name for expr in queries(dashboard()) for name in METRIC_NAME.findall(expr)}
    assert charted, "no metric found in the dashboard's queries"
    assert charted <= exposed.keys(), charted - exposed.keys()
    ours = {f for f in exposed.values() if f.startswith("mcp_local_provider_")}
    missing = ours - {exposed[name] for name in charted}
    assert not missing, f"not charted: {sorted(missing)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$instance", ".*"),
        }
        for i, expr in enumerate(q for q in queries(dashboard()) if "label_values" not in q)
    ]
    path = tmp_path / "rules.json"  # JSON is YAML, so promtool reads it as a rule file
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = await asyncio.to_thread(
        subprocess.run,
        ["promtool", "check", "rules", str(path)],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
async def test_prometheus_example_config_is_valid() -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        ["promtool", "check", "config", str(CONTRIB / "prometheus.yml")],
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_systemd_unit_runs_serve_with_settings_the_daemon_accepts() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    text = (CONTRIB / "mcp-local-provider.service").read_text()
    unit.read_string(text)
    assert unit["Service"]["ExecStart"].split()[1:] == ["serve"]
    assert unit["Install"]["WantedBy"] == "default.target"  # a user unit
    settings = {}
    for line in re.findall(r"^Environment=(.+)$", text, re.M):
        name, _, value = line.partition("=")
        assert name.startswith(ENV_PREFIX), name
        settings[name.removeprefix(ENV_PREFIX).lower()] = value
    assert settings, "the unit sets no environment"
    Config.model_validate(settings)  # each one is a real setting with a valid value


async def sampled_names(daemon: Daemon, http: aiohttp.ClientSession) -> set[str]:
    """The sample names ``daemon``'s second scrape carries (Prometheus scrapes every few
    seconds, and a scrape is counted once it has been answered)."""
    for _ in range(2):
        async with http.get(daemon.url + "/metrics") as response:
            text = await response.text()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


async def test_every_panel_shows_a_value_on_a_fresh_daemon(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    sampled = await sampled_names(daemon, http)
    empty = [
        expr
        for expr in queries(dashboard())
        if "label_values" not in expr
        and not set(METRIC_NAME.findall(expr)) <= sampled
        and not expr.endswith(" or vector(0)")
    ]
    assert not empty, f"panels with no data on a fresh daemon: {empty}"


async def test_series_with_labels_known_in_advance_start_at_zero(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(daemon.url + "/metrics") as response:
        text = await response.text()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("mcp_local_provider_requests_cancelled_total", (("family", "openai"),))] == 0
    assert samples[("mcp_local_provider_agent_connections_closed_total", (("code", "4408"),))] == 0
