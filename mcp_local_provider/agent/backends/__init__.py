"""Backends an agent can serve with, by name."""

from __future__ import annotations

from ..backend import Backend


def available() -> list[str]:
    return ["echo"]


def create(name: str, *, models: list[str] | None = None, **options: object) -> Backend:
    """Build the backend called ``name``; raises ValueError for an unknown name."""
    if name == "echo":
        from .echo import EchoBackend

        return EchoBackend(models=models or None)
    raise ValueError(f"unknown backend {name!r}; available: {', '.join(available())}")
