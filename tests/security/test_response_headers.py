"""Security headers on every response the application produces: JSON, streams, errors of
every kind, preflights and the WebSocket upgrade; never ``Access-Control-Allow-Origin: *``."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.fakes import Daemon
from tests.security.helpers import chat_body, port_of, raw_head, raw_request

JSON = {"Content-Type": "application/json"}
EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def assert_secure(headers: Any) -> None:
    for name, value in EXPECTED.items():
        assert headers.get(name) == value, (name, dict(headers))
    assert headers.get("Access-Control-Allow-Origin") != "*"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/health", {}, 200),
        ("GET", "/v1/models", {}, 200),
        ("POST", "/v1/chat/completions", {"data": chat_body(), "headers": JSON}, 200),
        ("POST", "/v1/chat/completions", {"data": chat_body(stream=True), "headers": JSON}, 200),
        ("POST", "/v1/chat/completions", {"data": b"{", "headers": JSON}, 400),
        ("GET", "/control/sessions", {}, 401),
        ("GET", "/nowhere", {}, 404),
        ("GET", "/api/tags", {}, 200),
        ("POST", "/api/chat", {"data": chat_body(stream=True), "headers": JSON}, 200),
        ("POST", "/api/chat", {"data": b"[]", "headers": JSON}, 400),
        ("GET", "/api/nowhere", {}, 404),
        ("DELETE", "/v1/models", {}, 405),
        ("GET", "/v1/models", {"headers": {"Origin": "https://attacker.example"}}, 403),
        (
            "POST",
            "/v1/chat/completions",
            {"data": "x", "headers": {"Content-Type": "text/plain", "Origin": "http://localhost"}},
            415,
        ),
        ("GET", "/v1/models?token=x", {}, 400),
        (
            "OPTIONS",
            "/v1/chat/completions",
            {"headers": {"Origin": "http://localhost", "Access-Control-Request-Method": "POST"}},
            204,
        ),
    ],
)
async def test_every_response_carries_the_security_headers(
    echo_daemon: Daemon,
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    async with http.request(method, echo_daemon.url + path, **kwargs) as response:
        await response.read()
        assert response.status == status
        assert_secure(response.headers)


async def test_refused_bodies_carry_them(start_daemon: Any) -> None:
    daemon = await start_daemon(max_body_bytes=1024)
    response = await raw_request(
        port_of(daemon), "POST", "/v1/chat/completions", body=b"x" * 2048,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status == 413
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_host_refusals_carry_them(daemon: Daemon) -> None:
    response = await raw_request(port_of(daemon), "GET", "/health", host="attacker.example")
    assert response.status == 403
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_websocket_upgrade_carries_them(daemon: Daemon) -> None:
    head = await raw_head(
        port_of(daemon),
        (
            "GET /agent HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {daemon.token}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    assert head.startswith(b"HTTP/1.1 101")
    assert b"X-Frame-Options: DENY" in head and b"X-Content-Type-Options: nosniff" in head


async def test_allowed_origins_are_echoed_never_star(
    echo_daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    async with http.get(
        echo_daemon.url + "/v1/models", headers={"Origin": "http://127.0.0.1:8080"}
    ) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
        assert_secure(response.headers)
