"""Which part of the daemon a request is for: one classifier and one route name, used alike by
the guards, the error shapes, the metrics labels, the access log and the audit log; and which
dialect answers each editor family's errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from mcp_local_provider.core import errors
from mcp_local_provider.core.call import UNMATCHED
from mcp_local_provider.translate.anthropic import errors as anthropic_errors
from mcp_local_provider.translate.ollama import errors as ollama_errors
from mcp_local_provider.translate.openai import errors as openai_errors

OPENAI = "openai"
ANTHROPIC = "anthropic"
OLLAMA = "ollama"
AGENT = "agent"
CONTROL = "control"
HEALTH = "health"
METRICS = "metrics"
UI = "ui"
OTHER = "other"
#: Families whose requests come from editors (CORS, API keys, ``status`` traffic).
EDITOR_FAMILIES = frozenset({OPENAI, ANTHROPIC, OLLAMA})
#: The dialect that shapes each editor family's errors (its ``errors.error_body``); the
#: Responses route is in the OpenAI family, and its dialect uses OpenAI's body.
ERROR_BODIES: Mapping[str, Callable[[errors.ProviderError], dict[str, Any]]] = {
    OPENAI: openai_errors.error_body,
    ANTHROPIC: anthropic_errors.error_body,
    OLLAMA: ollama_errors.error_body,
}
#: Probes and scrapes share one metrics label.
_METRIC_LABELS = {HEALTH: "ops", METRICS: "ops", UI: OTHER}


def route_family(path: str) -> str:
    """The family of a path (or a route template): one of the names above."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return ANTHROPIC  # Anthropic's Messages API lives under OpenAI's /v1 prefix
    if path == "/v1" or path.startswith("/v1/"):
        return OPENAI
    if path == "/api" or path.startswith("/api/"):
        return OLLAMA
    if path == "/agent":
        return AGENT
    if path == "/control" or path.startswith("/control/"):
        return CONTROL
    if path in ("/", "/health") or path.startswith("/health/"):
        return HEALTH
    if path == "/metrics":
        return METRICS
    if path == "/ui" or path.startswith("/ui/"):
        return UI
    return OTHER


def metric_label(family: str) -> str:
    """The ``family`` label of the request metrics."""
    return _METRIC_LABELS.get(family, family)


def route_template(request: web.Request) -> str:
    """The matched route's template (``/control/sessions/{session_id}/approve``), never the
    raw path or its query, so logs and labels only ever hold the app's routes and
    ``unmatched``."""
    resource = request.match_info.route.resource
    if resource is None or request.match_info.http_exception is not None:
        return UNMATCHED
    return resource.canonical
