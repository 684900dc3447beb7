"""The router without sockets: a fake link records what would go to the agent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import Call, CallRecord, Timeouts
from mcp_local_provider.core.protocol import (
    Frame,
    ModelResult,
    ModelSpec,
    ModelStreamChunk,
    encode,
)
from mcp_local_provider.core.registry import Registry, Session, SessionLimits, SessionState
from mcp_local_provider.core.router import Router


class FakeLink:
    """Records each frame as the agent would read it off the wire."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, frame: Frame) -> None:
        self.sent.append(json.loads(encode(frame)))

    async def close(self, code: int, reason: str) -> None:
        self.sent.append({"closed": code})

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("type") == kind]


def make(
    timeouts: Timeouts | None = None, observers: list[Callable[[CallRecord], None]] | None = None
) -> tuple[Registry, Router]:
    registry = Registry(SessionLimits(("inference",), 60, 60, 100, 2))
    router = Router(registry, timeouts or Timeouts(1.0, 1.0, 5.0, 0.05), observers=observers or ())
    return registry, router


def active(registry: Registry, model: str = "m", **limits: Any) -> tuple[Session, FakeLink]:
    session, _ = registry.register(
        agent_id="a",
        label="",
        models=[ModelSpec(name=model)],
        scopes=["inference"],
        ttl_seconds=None,
        max_concurrency=limits.get("max_concurrency"),
        max_requests=limits.get("max_requests"),
    )
    link = FakeLink()
    session.link = link
    return session, link


def chunk(rid: str, text: str, finish: str | None = None) -> ModelStreamChunk:
    return ModelStreamChunk(
        type="model_stream_chunk", id=rid, delta={"content": text}, finish_reason=finish
    )


def call(model: str = "m", **kw: Any) -> Call:
    return Call(kind="chat", model=model, payload={"kind": "chat", "model": model}, **kw)


async def test_frames_flow_to_the_caller_in_order_and_the_slot_is_freed() -> None:
    registry, router = make()
    session, link = active(registry)
    c = call()
    async with router.open(c) as events:
        assert link.of_type("model_invoke")[0]["id"] == c.request_id
        assert session.in_flight == 1
        router.deliver(session, chunk(c.request_id, "a"))
        router.deliver(session, chunk(c.request_id, "b", "stop"))
        got = [e.delta["content"] async for e in events]
    assert got == ["a", "b"]
    assert session.in_flight == 0 and session.requests == 1
    await asyncio.sleep(0)
    assert link.of_type("model_cancel") == []  # the agent finished: nothing to cancel


async def test_leaving_early_cancels_the_agent_with_client_disconnected() -> None:
    registry, router = make()
    _, link = active(registry)
    c = call()
    async with router.open(c):
        pass
    await asyncio.sleep(0)
    assert link.of_type("model_cancel") == [
        {"type": "model_cancel", "id": c.request_id, "reason": "client_disconnected"}
    ]


async def test_first_chunk_timeout_raises_504_and_cancels_with_timeout() -> None:
    outcomes: list[str | None] = []
    registry, router = make(Timeouts(0.05, 1.0, 5.0, 0.05), [lambda p: outcomes.append(p.outcome)])
    _, link = active(registry)
    with pytest.raises(errors.AgentTimeout) as raised:
        async with router.open(call()) as events:
            async for _ in events:
                pass
    assert raised.value.phase == "first_chunk" and raised.value.status == 504
    await asyncio.sleep(0)
    assert link.of_type("model_cancel")[0]["reason"] == "timeout"
    assert outcomes == ["timeout"]


async def test_idle_timeout_applies_between_chunks() -> None:
    registry, router = make(Timeouts(1.0, 0.05, 5.0, 0.05))
    session, _ = active(registry)
    c = call()
    with pytest.raises(errors.AgentTimeout) as raised:
        async with router.open(c) as events:
            router.deliver(session, chunk(c.request_id, "a"))
            async for _ in events:
                pass
    assert raised.value.phase == "idle"


async def _send_every(
    router: Router, session: Session, rid: str, gap: float, count: int | None
) -> None:
    index = 0
    while count is None or index < count:
        await asyncio.sleep(gap)
        last = count is not None and index == count - 1
        router.deliver(session, chunk(rid, str(index), "stop" if last else None))
        index += 1


async def test_a_stream_whose_frames_keep_coming_within_the_idle_timeout_runs_past_it() -> None:
    registry, router = make(Timeouts(1.0, 0.1, 5.0, 0.05))
    session, _ = active(registry)
    c = call()
    sending = asyncio.create_task(_send_every(router, session, c.request_id, 0.03, 10))
    async with router.open(c) as events:
        got = [frame.delta["content"] async for frame in events]  # type: ignore[union-attr]
    await sending
    assert got == [str(i) for i in range(10)]  # 0.3 s in all: three idle timeouts' worth


async def test_the_total_timeout_cuts_a_stream_that_keeps_sending() -> None:
    registry, router = make(Timeouts(1.0, 0.1, 0.2, 0.05))
    session, _ = active(registry)
    c = call()
    sending = asyncio.create_task(_send_every(router, session, c.request_id, 0.03, None))
    try:
        with pytest.raises(errors.AgentTimeout) as raised:
            async with router.open(c) as events:
                async for _ in events:
                    pass
    finally:
        sending.cancel()
    assert raised.value.phase == "total"


async def test_a_frame_arriving_after_a_longer_first_wait_gets_the_shorter_idle_timeout() -> None:
    registry, router = make(Timeouts(5.0, 0.05, 10.0, 0.05))
    session, _ = active(registry)
    c = call()
    loop = asyncio.get_running_loop()
    loop.call_later(0.02, router.deliver, session, chunk(c.request_id, "a"))
    started = loop.time()
    with pytest.raises(errors.AgentTimeout) as raised:
        async with router.open(c) as events:
            async for _ in events:
                pass
    assert raised.value.phase == "idle" and loop.time() - started < 1.0


async def test_frames_from_another_session_are_dropped_and_counted() -> None:
    registry, router = make()
    session, _ = active(registry)
    other, _ = active(registry, model="x")
    c = call()
    async with router.open(c):
        assert router.deliver(other, chunk(c.request_id, "forged", "stop")) is False
        assert router.deliver(session, chunk("req-unknown", "late")) is False
    assert router.dropped_frames == 2


async def test_failing_a_session_ends_its_calls_at_once() -> None:
    registry, router = make()
    session, _ = active(registry)
    with pytest.raises(errors.AgentDisconnected):
        async with router.open(call()) as events:
            router.fail_session(session, errors.AgentDisconnected("gone"))
            async for _ in events:
                pass


async def test_agent_error_result_becomes_agent_failed() -> None:
    registry, router = make()
    session, _ = active(registry)
    c = call()
    with pytest.raises(errors.AgentFailed, match="quota"):
        async with router.open(c) as events:
            router.deliver(
                session,
                ModelResult(
                    type="model_result",
                    id=c.request_id,
                    status="error",
                    error={"code": "x", "message": "quota exceeded"},
                ),
            )
            async for _ in events:
                pass


async def test_a_session_serving_the_model_is_preferred() -> None:
    registry, router = make()
    active(registry, model="other")
    wanted, _ = active(registry, model="m")
    async with router.open(call("m")):
        assert wanted.in_flight == 1


async def test_least_busy_session_is_chosen() -> None:
    registry, router = make()
    first, _ = active(registry)
    second, _ = active(registry)
    async with router.open(call()), router.open(call()):
        assert (first.in_flight, second.in_flight) == (1, 1)


async def test_no_active_session_is_503() -> None:
    _, router = make()
    with pytest.raises(errors.NoActiveSession):
        async with router.open(call()):
            pass


async def test_disconnected_session_is_waited_for_within_the_grace() -> None:
    registry, router = make(Timeouts(1.0, 1.0, 5.0, 1.0))
    session, link = active(registry)
    session.link = None

    async def come_back() -> None:
        await asyncio.sleep(0.02)
        session.link = link
        router.sessions_changed()

    back = asyncio.create_task(come_back())
    async with router.open(call()):
        assert link.of_type("model_invoke")
    await back


async def test_disconnected_session_gives_503_after_the_grace() -> None:
    registry, router = make()
    session, _ = active(registry)
    session.link = None
    with pytest.raises(errors.NoActiveSession, match="may reconnect"):
        async with router.open(call()):
            pass


async def test_full_session_makes_the_call_wait_for_a_free_slot() -> None:
    registry, router = make()
    active(registry, max_concurrency=1)
    first = call()
    entered = asyncio.Event()

    async def second() -> None:
        async with router.open(call()):
            entered.set()

    async with router.open(first):
        task = asyncio.create_task(second())
        await asyncio.sleep(0.02)
        assert not entered.is_set()
    await asyncio.wait_for(task, 1)
    assert entered.is_set()


async def test_exhausted_session_is_429() -> None:
    registry, router = make()
    active(registry, max_requests=1)
    async with router.open(call()):
        pass
    with pytest.raises(errors.LimitReached):
        async with router.open(call()):
            pass


async def test_unknown_session_hint_is_404() -> None:
    registry, router = make()
    active(registry)
    with pytest.raises(errors.NotFound):
        async with router.open(call(session_hint="sess-nope")):
            pass


async def test_ended_sessions_are_not_routed_to() -> None:
    registry, router = make()
    session, _ = active(registry)
    registry.end(session.id, SessionState.REVOKED)
    with pytest.raises(errors.NoActiveSession):
        async with router.open(call()):
            pass


class BrokenLink(FakeLink):
    async def send(self, frame: Frame) -> None:
        raise ConnectionError("socket is gone")


async def test_invoke_that_cannot_be_sent_is_agent_disconnected_and_frees_the_slot() -> None:
    outcomes: list[str | None] = []
    registry, router = make(observers=[lambda p: outcomes.append(p.outcome)])
    session, _ = active(registry)
    session.link = BrokenLink()
    with pytest.raises(errors.AgentDisconnected):
        async with router.open(call()):
            pass
    assert outcomes == ["agent_disconnected"] and session.in_flight == 0
