"""``GET /openapi.json``: it describes every route, with the very models that validate bodies,
and schemathesis, driving every route from it against a real daemon and echo agent, finds no
5xx and no error outside its route's own shape."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from mcp_local_provider.translate.openai.request import ChatRequest
from tests.conftest import StartDaemon
from tests.fakes import BRIDGE_TOKEN, Daemon

#: Examples per route and generation mode: enough to reach every field, quick in CI.
EXAMPLES = 15


async def fetch_document(daemon: Daemon, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(daemon.url + "/openapi.json") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
    return document


def app_routes(daemon: Daemon) -> set[tuple[str, str]]:
    found = set()
    for route in daemon.app.router.routes():
        if route.method == "HEAD" or route.resource is None:
            continue
        path = route.resource.canonical.replace("{model:.+}", "{model}")
        found.add((route.method.lower(), path))
    return found


async def test_the_document_describes_every_route_but_the_agent_socket_and_the_page(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    document = await fetch_document(daemon, http)
    described = {(method, path) for path, item in document["paths"].items() for method in item}
    # The web page (/ui) is HTML for a browser, not an API.
    page = {(method, path) for method, path in app_routes(daemon) if path.startswith("/ui")}
    assert page
    assert described == app_routes(daemon) - {("get", "/agent")} - page
    assert document["openapi"].startswith("3.1")


async def test_request_bodies_are_the_models_that_validate_them(
    daemon: Daemon, http: aiohttp.ClientSession
) -> None:
    document = await fetch_document(daemon, http)
    body = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    expected = ChatRequest.model_json_schema()
    assert set(schema["properties"]) == set(expected["properties"])
    assert schema.get("required") == expected.get("required")


def fuzz(url: str, document: dict[str, Any]) -> list[str]:
    """Drive every operation with valid and invalid requests; the failures, as text."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    headers = {"Authorization": f"Bearer {BRIDGE_TOKEN}"}
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(cases)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=url, headers=headers, checks=checks, timeout=10)

        try:
            run()
        except Exception as exc:  # every operation is tried; the report lists each failure
            failures.append(f"{operation.label}: {exc}")
    return failures


async def test_schemathesis_finds_no_server_error_and_no_foreign_error_shape(
    start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    # No rate limits: the fuzz sends hundreds of requests a second to one session.
    daemon = await start_daemon(requests_per_minute=0, max_requests=1_000_000)
    await daemon.start_agent()
    document = await fetch_document(daemon, http)
    failures = await asyncio.to_thread(fuzz, daemon.url, document)
    assert not failures, "\n\n".join(failures)
