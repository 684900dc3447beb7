"""What every fault test checks afterwards, on an in-process daemon: the daemon is quiet again
(no call, wait, slot or background task left behind, gauges at zero) and other sessions serve."""

from __future__ import annotations

import aiohttp

from tests.fakes import Daemon, until
from tests.readings import Meter


async def quiet(daemon: Daemon) -> None:
    """Every counter of work in flight is back to zero, and nothing runs in the background."""
    state = daemon.state
    router = state.router

    def idle() -> bool:
        return (
            router.in_flight == 0
            and router.waiting == 0
            and not router._background
            and not state.hub._goodbyes
            and all(s.in_flight == 0 for s in state.registry)
            and state.security.in_flight == 0
        )

    await until(idle)
    meter = Meter(daemon)
    assert meter("relay_calls_in_flight") == 0
    for family in ("openai", "ollama"):
        assert meter("requests_in_flight", family=family) == 0


async def others_served(daemon: Daemon, http: aiohttp.ClientSession) -> None:
    """The echo agent's session (started by the test) still answers at once."""
    body = {"model": "echo", "messages": [{"role": "user", "content": "unharmed"}]}
    async with http.post(daemon.url + "/v1/chat/completions", json=body) as response:
        assert response.status == 200, await response.text()
        reply = await response.json()
    assert reply["choices"][0]["message"]["content"] == "unharmed"
