"""Backends an agent can serve with, by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mcp_local_provider.agent.backend import Backend

if TYPE_CHECKING:
    from mcp_local_provider.core.config import BackendSettings

#: Backends that run an agent CLI.
CLI_BACKENDS = ("claude", "cursor", "gemini", "codex")


def available() -> list[str]:
    return ["echo", "openai", *CLI_BACKENDS]


def create(
    name: str,
    *,
    models: list[str] | None = None,
    settings: BackendSettings | None = None,
    **options: object,
) -> Backend:
    """Build the backend called ``name``; raises ValueError for an unknown name.

    ``settings`` is the ``[agent.backends.NAME]`` table; its ``kind`` lets a table with any
    name use one of the built-in backends (two OpenAI upstreams, say).
    """
    kind = settings.kind if settings is not None and settings.kind else name
    if kind == "echo":
        from mcp_local_provider.agent.backends.echo import EchoBackend

        return EchoBackend(models=models or None)
    if kind == "openai":
        from mcp_local_provider.agent.backends.openai import OpenAIBackend

        base_url = options.get("base_url")
        return OpenAIBackend(
            settings, models=models, base_url=base_url if isinstance(base_url, str) else None
        )
    if kind == "claude":
        from mcp_local_provider.agent.backends.claude import ClaudeBackend

        return ClaudeBackend(settings, models=models)
    if kind == "cursor":
        from mcp_local_provider.agent.backends.cursor import CursorBackend

        return CursorBackend(settings, models=models)
    if kind == "gemini":
        from mcp_local_provider.agent.backends.gemini import GeminiBackend

        return GeminiBackend(settings, models=models)
    if kind == "codex":
        from mcp_local_provider.agent.backends.codex import CodexBackend

        return CodexBackend(settings, models=models)
    raise ValueError(f"unknown backend {name!r}; available: {', '.join(available())}")
