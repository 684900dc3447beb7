"""What the daemon records of each settled call, and the live figures read at scrape time.

``observe_call`` is a router observer: it runs once per call, in the handler's task, and
updates the metrics and the call's request scope (the model label, the outcome and the span
spent waiting on agents, which the request middleware turns into the relay overhead).
"""

from __future__ import annotations

import logging

import structlog

from mcp_local_provider.core.call import CallRecord
from mcp_local_provider.obs.labels import OTHER, OUTCOMES
from mcp_local_provider.obs.metrics import Metrics

log = structlog.get_logger("mcp_local_provider.instrumentation")
#: Its level decides whether per-call debug lines are built at all (see ``logs.configure``).
_debug = logging.getLogger("mcp_local_provider.instrumentation")


def observe_call(metrics: Metrics, pending: CallRecord) -> None:
    """Record one settled call: the router calls this once per call, in the handler's task."""
    try:
        _record_call(metrics, pending)
    except Exception:  # metrics must never break a request
        log.exception("metrics_observer_failed")


def observe_failover(metrics: Metrics, pending: CallRecord, reason: str) -> None:
    """Count one attempt the router gave up before its first frame (a failover observer)."""
    try:
        metrics.failovers.labels(pending.call.model, reason).inc()
    except Exception:  # metrics must never break a request
        log.exception("metrics_observer_failed")


def _record_call(metrics: Metrics, pending: CallRecord) -> None:
    call = pending.call
    model = call.model if pending.session.serves(call.model) else OTHER
    outcome = pending.outcome if pending.outcome in OUTCOMES else OTHER
    ctx = call.request_scope
    arrived = ctx.started if ctx is not None else pending.queued_at
    first, last = pending.first_frame_at, pending.last_frame_at
    prompt, completion = reported_tokens(pending.usage)
    metrics.call_settled(
        model=model,
        outcome=outcome,
        frames=pending.frames,
        prompt_tokens=prompt,
        completion_tokens=completion,
        ttft=None if first is None else max(0.0, first - arrived),
        queue_wait=max(0.0, pending.assigned_at - pending.queued_at),
        agent_time=None if last is None else last - pending.assigned_at,
    )
    if outcome == "timeout" and pending.timeout_phase is not None:
        metrics.timeouts.labels(pending.timeout_phase).inc()
    if _debug.isEnabledFor(logging.DEBUG):
        _log_call(pending, model)
    if ctx is None:
        return
    if model != OTHER:
        ctx.model = model
    answered = outcome == "ok" and pending.last_frame_at is not None
    ctx.calls += 1
    if ctx.outcome in (None, "ok"):
        ctx.outcome = pending.outcome
    ctx.answered = answered if ctx.calls == 1 else ctx.answered and answered
    ctx.agent_from = min(ctx.agent_from or pending.queued_at, pending.queued_at)
    if pending.last_frame_at is not None:
        ctx.agent_to = max(ctx.agent_to or pending.last_frame_at, pending.last_frame_at)


def reported_tokens(usage: object) -> tuple[int, int]:
    """(prompt, completion) tokens from an agent's usage report; 0 for anything unusable."""
    if not isinstance(usage, dict):
        return 0, 0
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    return _count(prompt), _count(completion)


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _log_call(pending: CallRecord, model: str) -> None:
    details: dict[str, object] = {}
    if pending.timeout_phase is not None:
        details["timeout_phase"] = pending.timeout_phase
    if pending.last_frame_at is not None:
        details["agent_ms"] = _ms(pending.last_frame_at - pending.assigned_at)
    log.debug(
        "call_settled",
        call_id=pending.call.request_id,
        session_id=pending.session.id,
        model=model,
        outcome=pending.outcome,
        frames=pending.frames,
        queue_ms=_ms(pending.assigned_at - pending.queued_at),
        **details,
    )


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
