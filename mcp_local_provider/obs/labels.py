"""The names, label values and buckets of the daemon's metrics: every label takes its values
from one of these small, known sets (see docs/operations.md for the reference)."""

from __future__ import annotations

PREFIX = "mcp_local_provider_"

#: Why a guard refused a request (``rejected_total{reason}``).
REJECT_REASONS = ("host", "origin", "auth", "size", "validation", "rate_limited")
#: Session events (``session_events_total{event}``), as the hub names them.
SESSION_EVENTS = (
    "pending",
    "approved",
    "registered",
    "denied",
    "revoked",
    "expired",
    "resumed",
    "disconnected",
    "left",
)
#: Where a call can time out (``timeouts_total{phase}``).
TIMEOUT_PHASES = ("queue", "first_chunk", "idle", "total")
#: How a call handed to an agent ended (``relay_calls_total{outcome}``).
OUTCOMES = (
    "ok",
    "agent_error",
    "timeout",
    "agent_disconnected",
    "session_ended",
    "shutting_down",
    "client_disconnected",
)
#: WebSocket close codes an agent connection can end with; anything else is ``other``.
CLOSE_CODES = frozenset({1000, 1001, 1006, 1009, 1011, 4400, 4401, 4403, 4408, 4409})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
#: The ``family`` label of the request metrics (probes and scrapes are both ``ops``).
FAMILIES = ("openai", "ollama", "agent", "control", "ops", OTHER)

# Seconds. Requests run from milliseconds (health, models) to minutes (long generations).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
# The daemon's own share of a request should be well under a millisecond.
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
