"""The live gauges: sessions, agents, calls in flight and dropped frames, read from the daemon
when Prometheus scrapes (and by health and status), so nothing has to keep them up to date."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mcp_local_provider.core.registry import Registry, SessionState
from mcp_local_provider.core.router import Router
from mcp_local_provider.obs.labels import PREFIX


class Figures(NamedTuple):
    """What the gauges read from the daemon at scrape time."""

    pending_sessions: int
    active_sessions: int
    connected_agents: int
    calls_in_flight: int
    dropped_frames: int
    #: (session id, seconds left) of each active session cooling down.
    cooling: tuple[tuple[str, float], ...] = ()


class LiveGauges(Collector):
    """Gauges read when Prometheus scrapes, so nothing has to keep them up to date."""

    def __init__(self, read: Callable[[], Figures]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        figures = self.read()
        sessions = GaugeMetricFamily(
            PREFIX + "sessions", "Agent sessions by state.", labels=["state"]
        )
        sessions.add_metric(["pending"], figures.pending_sessions)
        sessions.add_metric(["active"], figures.active_sessions)
        yield sessions
        yield GaugeMetricFamily(
            PREFIX + "agents_connected",
            "Active sessions whose agent is connected right now.",
            value=figures.connected_agents,
        )
        yield GaugeMetricFamily(
            PREFIX + "relay_calls_in_flight",
            "Calls handed to an agent and not yet settled.",
            value=figures.calls_in_flight,
        )
        cooling = GaugeMetricFamily(
            PREFIX + "session_cooling_seconds",
            "Seconds of cool-down left for each session whose vendor refused (rate limit or "
            "quota); routing skips it until then.",
            labels=["session_id"],
        )
        for session_id, left in figures.cooling:
            cooling.add_metric([session_id], left)
        yield cooling
        yield CounterMetricFamily(
            PREFIX + "dropped_frames",
            "Agent frames dropped because their call had already ended.",
            value=figures.dropped_frames,
        )

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        # Describing without reading keeps registration free of side effects.
        return iter(())


def live_figures(registry: Registry, router: Router) -> Figures:
    """Sessions, agents and calls right now (gauges, health, status)."""
    active = registry.in_state(SessionState.ACTIVE)
    now = registry.clock()
    return Figures(
        pending_sessions=registry.count(SessionState.PENDING),
        active_sessions=len(active),
        connected_agents=sum(1 for s in active if s.connected),
        calls_in_flight=router.in_flight,
        dropped_frames=router.dropped_frames,
        cooling=tuple(
            (s.id, round(s.cooling_left(now), 1)) for s in active if s.cooling_left(now) > 0
        ),
    )
