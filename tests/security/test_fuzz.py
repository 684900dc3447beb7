"""Property-based: random JSON and random bytes at every POST route never get a 5xx, and the
daemon (and its agent) stay up. Routes this daemon does not have yet are included: whatever
serves them later is held to the same property."""

from __future__ import annotations

import asyncio
import http.client
import json
from typing import Any

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import Daemon

POST_ROUTES = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/api/chat",
    "/api/generate",
    "/api/embed",
    "/api/embeddings",
    "/api/show",
    "/control/register",
    "/control/revoke",
    "/control/sessions/sess-0123456789abcdef/approve",
    "/control/sessions/sess-0123456789abcdef/deny",
    "/control/sessions/sess-0123456789abcdef/revoke",
]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
# Shaped like requests, so the fuzzing reaches past the first validation error.
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool"]) | st.text(max_size=8)},
    optional={
        "content": st.text(max_size=60)
        | st.lists(
            st.fixed_dictionaries({"type": st.just("text"), "text": st.text()}) | json_values,
            max_size=3,
        )
        | json_values,
        "tool_calls": json_values,
        "name": json_values,
    },
)
request_like = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["echo", "echo:latest", "", "../x", "a" * 250])
        | st.text(max_size=20)
    },
    optional={
        "messages": st.lists(message, max_size=4) | json_values,
        "prompt": json_values,
        "suffix": json_values,
        "input": json_values,
        "stream": st.booleans() | json_values,
        "stream_options": json_values,
        "max_tokens": json_values,
        "temperature": json_values,
        "stop": json_values,
        "n": json_values,
        "options": json_values,
        "agent_id": st.text(max_size=20),
        "session_id": json_values,
    },
)
# Valid chat requests with random text and random extra fields (passed on to the agent).
valid_chat = st.builds(
    lambda base, extra: {**extra, **base},
    st.fixed_dictionaries(
        {
            "model": st.just("echo"),
            "messages": st.lists(
                st.fixed_dictionaries(
                    {"role": st.sampled_from(["user", "system", "assistant"]),
                     "content": st.text(max_size=80)}
                ),
                min_size=1,
                max_size=4,
            ),
        },
        optional={"stream": st.booleans(), "max_tokens": st.integers(1, 100)},
    ),
    st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)  # fmt: skip
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    request_like.map(lambda v: json.dumps(v).encode()),
    valid_chat.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)
routes = st.sampled_from(POST_ROUTES) | st.just("/v1/chat/completions")
content_types = st.sampled_from(
    [None, "application/json", "application/json; charset=latin-1", "text/plain"]
)


async def test_random_bodies_at_every_post_route_never_get_a_5xx(
    start_daemon: Any,
) -> None:
    daemon: Daemon = await start_daemon(requests_per_minute=0, max_requests=100_000)
    await daemon.start_agent()
    port = daemon.server.port
    assert port is not None
    seen: dict[int, int] = {}

    @settings(
        max_examples=300,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(route=routes, body=bodies, content_type=content_types)
    def post(route: str, body: bytes, content_type: str | None) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        headers = {"Authorization": f"Bearer {daemon.token}"}
        if content_type is not None:
            headers["Content-Type"] = content_type
        try:
            connection.request("POST", route, body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        seen[response.status] = seen.get(response.status, 0) + 1
        assert response.status < 500, (route, body, response.status, payload)
        if response.headers.get("Content-Type", "").startswith("application/json"):
            json.loads(payload)  # every error is well-formed JSON

    await asyncio.to_thread(post)
    assert any(status == 200 for status in seen), seen  # some requests did reach the agent
    assert {400, 404} <= set(seen)
    async with aiohttp.ClientSession() as session, session.get(daemon.url + "/health") as r:
        assert r.status == 200
        assert (await r.json())["sessions"]["connected"] == 1
    assert daemon.state.router.in_flight == 0
