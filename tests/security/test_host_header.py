"""DNS rebinding: the raw Host header is checked on every route against an exact allow-list.
Raw sockets, because an HTTP client library would always send a tidy Host header."""

from __future__ import annotations

from typing import Any

import pytest

from mcp_local_provider.core.addresses import split_host
from mcp_local_provider.policy.hosts import HostPolicy
from tests.fakes import Daemon
from tests.readings import Meter
from tests.security.helpers import port_of, raw_head, raw_request

# One route of each family, including routes this daemon may not have: the check runs first.
ROUTES = [
    ("GET", "/v1/models", "openai"),
    ("GET", "/api/tags", "ollama"),
    ("GET", "/agent", "control"),
    ("GET", "/control/sessions", "control"),
    ("GET", "/health", "control"),
    ("GET", "/metrics", "control"),
    ("GET", "/", "control"),
    ("POST", "/v1/chat/completions", "openai"),
]


def assert_family_error(body: Any, family: str) -> None:
    if family == "openai":
        assert body["error"]["type"] == "permission_error"
        assert body["error"]["code"] == "forbidden"
        assert "param" in body["error"]
    elif family == "ollama":
        assert isinstance(body["error"], str) and "Host" in body["error"]
    else:
        assert body["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "family"), ROUTES)
async def test_rebound_host_is_403_on_every_route(
    daemon: Daemon, method: str, path: str, family: str
) -> None:
    meter = Meter(daemon)
    response = await raw_request(port_of(daemon), method, path, host="attacker.example")
    assert response.status == 403
    assert_family_error(response.json(), family)
    assert meter("rejected_total", reason="host") == 1


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:{port}",
        "localhost.attacker.example",
        "127.0.0.1.nip.io:{port}",
        "localhost.",
        "[0:0:0:0:0:0:0:1]:{port}",
        "127.1",
        "",
        "localhost:{port}:{port}",
        "user@localhost:{port}",
        "localhost:99999",
    ],
)
async def test_hosts_off_the_allow_list_are_refused(daemon: Daemon, host: str) -> None:
    port = port_of(daemon)
    response = await raw_request(port, "GET", "/health", host=host.format(port=port))
    assert response.status == 403


async def test_wrong_port_is_refused(daemon: Daemon) -> None:
    port = port_of(daemon)
    response = await raw_request(port, "GET", "/health", host=f"localhost:{port + 1}")
    assert response.status == 403


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST:{port}", "127.0.0.1:{port}", "[::1]:{port}", "[::1]"]
)
async def test_loopback_names_with_or_without_the_port_pass(daemon: Daemon, host: str) -> None:
    port = port_of(daemon)
    response = await raw_request(port, "GET", "/health", host=host.format(port=port))
    assert response.status == 200


async def test_missing_host_on_http_1_0_is_403(daemon: Daemon) -> None:
    response = await raw_request(
        port_of(daemon), "GET", "/v1/models", host=None, version="HTTP/1.0"
    )
    assert response.status == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_missing_host_on_http_1_1_is_refused(daemon: Daemon) -> None:
    response = await raw_request(port_of(daemon), "GET", "/v1/models", host=None)
    assert response.status == 400  # refused by the HTTP parser before any route runs


async def test_duplicate_host_is_refused(daemon: Daemon) -> None:
    port = port_of(daemon)
    response = await raw_request(
        port, "GET", "/v1/models", host="attacker.example", headers=[("Host", f"127.0.0.1:{port}")]
    )
    assert response.status == 400
    again = await raw_request(
        port, "GET", "/v1/models", host=f"127.0.0.1:{port}", headers=[("Host", "attacker.example")]
    )
    assert again.status == 400


async def test_absolute_form_target_with_a_foreign_authority_is_403(daemon: Daemon) -> None:
    port = port_of(daemon)
    # request.host would say attacker.example here; the raw Host header says 127.0.0.1.
    response = await raw_request(
        port, "GET", "http://attacker.example/v1/models", host=f"127.0.0.1:{port}"
    )
    assert response.status == 403


async def test_absolute_form_target_with_userinfo_is_403(daemon: Daemon) -> None:
    port = port_of(daemon)
    response = await raw_request(
        port, "GET", f"http://x@127.0.0.1:{port}/v1/models", host=f"127.0.0.1:{port}"
    )
    assert response.status == 403


async def test_absolute_form_target_for_this_daemon_passes(daemon: Daemon) -> None:
    port = port_of(daemon)
    response = await raw_request(
        port, "GET", f"http://127.0.0.1:{port}/v1/models", host=f"127.0.0.1:{port}"
    )
    assert response.status == 200


async def test_configured_extra_names_pass(start_daemon: Any) -> None:
    daemon = await start_daemon(allowed_hosts=["my-box.local", "tunnel.local:9000"])
    port = port_of(daemon)
    for host in ("my-box.local", f"My-Box.Local:{port}", "tunnel.local:9000"):
        assert (await raw_request(port, "GET", "/health", host=host)).status == 200
    for host in ("tunnel.local", f"tunnel.local:{port}", "my-box.local:9000"):
        assert (await raw_request(port, "GET", "/health", host=host)).status == 403


async def test_websocket_upgrade_with_rebound_host_is_refused(daemon: Daemon) -> None:
    port = port_of(daemon)
    data = (
        "GET /agent HTTP/1.1\r\nHost: attacker.example\r\n"
        f"Authorization: Bearer {daemon.token}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    answer = await raw_head(port, data)
    assert answer.startswith(b"HTTP/1.1 403")


def test_host_policy_is_exact() -> None:
    policy = HostPolicy.build(["extra.test"])
    assert policy.allows("localhost", 8080)
    assert policy.allows("localhost:8080", 8080)
    assert not policy.allows("localhost:8081", 8080)
    assert policy.allows("EXTRA.test:8080", 8080)
    assert not policy.allows(None, 8080)
    assert split_host("[::1]:80") == ("[::1]", 80)
    assert split_host("[::1") is None
    assert split_host("::1") is None
    assert split_host("localhost:0") is None


def test_host_policy_decides_a_header_it_has_seen_by_the_connections_port() -> None:
    policy = HostPolicy.build([])
    assert policy.allows("localhost:8080", 8080)
    assert not policy.allows("localhost:8080", 9090)  # the same header, another listener
    assert not policy.allows("evil.test", 8080) and not policy.allows("evil.test", 8080)
    for n in range(200):  # many different headers: still exact, and only a few kept
        assert not policy.allows(f"evil{n}.test", 8080)
    assert policy.allows("localhost:8080", 8080)
    assert len(policy._split) <= 64
