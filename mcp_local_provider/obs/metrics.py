"""Every Prometheus collector the daemon exposes, built against a registry the app owns.

No aiohttp and no global registry: ``create_app`` builds one ``Metrics`` per app and tests
build their own. Names share the ``mcp_local_provider_`` prefix; every label takes its values
from a small, known set (see docs/operations.md for the reference).

The hot path stays lean: per-frame work is the router's integer ``frames += 1``; everything
else is recorded once per request or per call, when it ends.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from mcp_local_provider import __version__
from mcp_local_provider.core.call import RequestScope
from mcp_local_provider.obs.figures import Figures, LiveGauges
from mcp_local_provider.obs.labels import (
    CLOSE_CODES,
    DURATION_BUCKETS,
    FAMILIES,
    OTHER,
    OVERHEAD_BUCKETS,
    PREFIX,
    REJECT_REASONS,
    SESSION_EVENTS,
    TIMEOUT_PHASES,
    TTFT_BUCKETS,
)


class _ModelSeries:
    """One model's children of the per-model collectors, looked up once and kept."""

    __slots__ = ("agent_duration", "chunks", "completion_tokens", "prompt_tokens", "ttft")

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.chunks = metrics.chunks.labels(model)
        self.prompt_tokens = metrics.prompt_tokens.labels(model)
        self.completion_tokens = metrics.completion_tokens.labels(model)
        self.ttft = metrics.ttft.labels(model)
        self.agent_duration = metrics.agent_duration.labels(model)


class Metrics:
    """The daemon's collectors. ``registry`` is what ``GET /metrics`` exposes.

    Labelled children are looked up once per label set and kept (the sets are small), so a
    request costs a few dictionary lookups and increments.
    """

    def __init__(self, registry: CollectorRegistry, *, process: bool = True) -> None:
        # ``_created`` series double the output for nothing a dashboard here uses.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry
        if process:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)

        def counter(name: str, text: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, text, labels, registry=registry)

        def histogram(
            name: str, text: str, labels: tuple[str, ...], buckets: tuple[float, ...]
        ) -> Histogram:
            return Histogram(PREFIX + name, text, labels, registry=registry, buckets=buckets)

        build = Gauge(
            PREFIX + "build_info",
            "Always 1; the labels say which build is running.",
            ("version", "python"),
            registry=registry,
        )
        build.labels(__version__, platform.python_version()).set(1)
        self.start_time = Gauge(
            PREFIX + "start_time_seconds",
            "When the daemon started, in seconds since the Unix epoch.",
            registry=registry,
        )

        # HTTP requests, counted by the request middleware.
        self.requests = counter(
            "requests",
            "HTTP requests handled, by route family, route, method, model and status.",
            ("family", "route", "method", "model", "status"),
        )
        self.request_duration = histogram(
            "request_duration_seconds",
            "Time from receiving an HTTP request to its last byte (WebSocket upgrades excluded).",
            ("family", "route"),
            DURATION_BUCKETS,
        )
        self.in_flight = Gauge(
            PREFIX + "requests_in_flight",
            "HTTP requests being handled (agent WebSocket connections excluded).",
            ("family",),
            registry=registry,
        )
        self.cancelled = counter(
            "requests_cancelled",
            "HTTP requests whose client went away before the answer was complete.",
            ("family",),
        )
        self.relay_overhead = histogram(
            "relay_overhead_seconds",
            "Daemon time of an answered request: its duration minus the time spent waiting "
            "for a session and for the agent's answer.",
            ("family",),
            OVERHEAD_BUCKETS,
        )

        # Attempts given up before their first frame: the call went to another session.
        self.failovers = counter(
            "failovers",
            "Calls given to another session (or a fallback model) before their first frame, "
            "by model and reason (disconnected, quota, retryable).",
            ("model", "reason"),
        )

        # Calls handed to agents, recorded by the router observer when each one settles.
        self.calls = counter(
            "relay_calls",
            "Calls handed to an agent session, by model and outcome.",
            ("model", "outcome"),
        )
        self.ttft = histogram(
            "time_to_first_token_seconds",
            "Time from receiving a request to the agent's first frame.",
            ("model",),
            TTFT_BUCKETS,
        )
        self.agent_duration = histogram(
            "agent_duration_seconds",
            "Time from handing a call to the agent to its final frame arriving.",
            ("model",),
            DURATION_BUCKETS,
        )
        self.queue_wait = histogram(
            "queue_wait_seconds",
            "Time a call waited for a connected session with a free slot.",
            (),
            TTFT_BUCKETS,
        )
        self.chunks = counter("stream_chunks", "Frames relayed from agents to clients.", ("model",))
        self.prompt_tokens = counter(
            "prompt_tokens", "Prompt tokens, as reported by agents.", ("model",)
        )
        self.completion_tokens = counter(
            "completion_tokens", "Completion tokens, as reported by agents.", ("model",)
        )
        self.timeouts = counter("timeouts", "Calls that timed out, by phase.", ("phase",))

        # Guards, sessions and the audit log.
        self._rejected = counter(
            "rejected", "Requests refused before reaching an agent, by reason.", ("reason",)
        )
        self.session_events = counter(
            "session_events", "Agent session lifecycle events.", ("event",)
        )
        self.agent_connections_closed = counter(
            "agent_connections_closed",
            "Agent WebSocket connections that ended, by close code.",
            ("code",),
        )
        self.audit_write_failures = counter(
            "audit_write_failures", "Audit records that could not be written."
        )
        # Series whose labels are known in advance start at 0, so a fresh daemon's dashboard
        # shows 0 rather than "No data"; per-model series cannot (the dashboard's queries end
        # in ``or vector(0)`` instead).
        for family in FAMILIES:
            self.cancelled.labels(family)
        for code in (*sorted(CLOSE_CODES), OTHER):
            self.agent_connections_closed.labels(str(code))
        for reason in REJECT_REASONS:
            self._rejected.labels(reason)
        for event in SESSION_EVENTS:
            self.session_events.labels(event)
        for phase in TIMEOUT_PHASES:
            self.timeouts.labels(phase)
        self.audit_write_failures.inc(0)
        self._models: dict[str, _ModelSeries] = {}
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, collector: Any, *labels: str) -> Any:
        key = (id(collector), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = collector.labels(*labels)
        return child

    # -- what the request middleware and the router observer record ---------------------------

    def request_started(self, family: str) -> None:
        self._child(self.in_flight, family).inc()

    def request_finished(
        self,
        *,
        family: str,
        route: str,
        method: str,
        model: str,
        status: int,
        duration: float | None,
    ) -> None:
        """One HTTP request ended; ``duration`` None leaves it out of the histogram."""
        self._child(self.requests, family, route, method, model, str(status)).inc()
        if duration is not None:
            self._child(self.request_duration, family, route).observe(duration)

    def request_ended_in_flight(self, family: str) -> None:
        self._child(self.in_flight, family).dec()

    def relay_overhead_seen(self, family: str, seconds: float) -> None:
        """The daemon's own time in an answered request (see ``relay_overhead``)."""
        self._child(self.relay_overhead, family).observe(seconds)

    def call_settled(
        self,
        *,
        model: str,
        outcome: str,
        frames: int,
        prompt_tokens: int,
        completion_tokens: int,
        ttft: float | None,
        queue_wait: float,
        agent_time: float | None,
    ) -> None:
        """One call handed to an agent ended (see ``obs/calls.py``)."""
        series = self._models.get(model)
        if series is None:
            series = self._models[model] = _ModelSeries(self, model)
        self._child(self.calls, model, outcome).inc()
        if frames:
            series.chunks.inc(frames)
        if prompt_tokens:
            series.prompt_tokens.inc(prompt_tokens)
        if completion_tokens:
            series.completion_tokens.inc(completion_tokens)
        if ttft is not None:
            series.ttft.observe(ttft)
        if agent_time is not None:
            series.agent_duration.observe(agent_time)
        self.queue_wait.observe(queue_wait)

    # -- hooks for other parts of the daemon ------------------------------------------------

    def track(self, read: Callable[[], Figures]) -> None:
        """Expose the session, agent and in-flight gauges, read by ``read`` at scrape time."""
        self.registry.register(LiveGauges(read))

    def rejected(self, reason: str, scope: RequestScope | None = None) -> None:
        """Count a request a guard refused. ``reason`` is one of ``REJECT_REASONS``.

        Call it once per refused request, where the refusal is decided (a host, origin,
        API key, size or rate check), with the request's scope. The request middleware
        counts 400, 401 and 413 responses as ``validation``, ``auth`` and ``size`` itself,
        unless this was called for the request already, so nothing is counted twice.
        """
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; known: {REJECT_REASONS}")
        self._rejected.labels(reason).inc()
        if scope is not None:
            scope.rejected = reason

    def audit_write_failed(self) -> None:
        """Count an audit record that could not be written (call it from the audit writer)."""
        self.audit_write_failures.inc()

    def session_event(self, event: str) -> None:
        """Count a hub event; ``closed`` is a connection event, counted by close code instead."""
        if event != "closed":
            self.session_events.labels(event if event in SESSION_EVENTS else OTHER).inc()

    def agent_connection_closed(self, code: int | None) -> None:
        """Count an agent connection that ended with ``code`` (None: no close frame, 1006)."""
        code = 1006 if code is None else code
        label = str(code) if code in CLOSE_CODES else OTHER
        self.agent_connections_closed.labels(label).inc()
