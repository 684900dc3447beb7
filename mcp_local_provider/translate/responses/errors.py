"""Responses errors. Before a stream, the body is OpenAI's (the route lives under ``/v1``, whose
clients parse that shape); once a stream has begun, a ``response.failed`` event carries the
response's own ``error`` object."""

from __future__ import annotations

from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.translate.openai.errors import error_body

__all__ = ["error_body", "error_object"]


def error_object(error: errors.ProviderError) -> dict[str, Any]:
    """The ``error`` of a failed response."""
    return {"code": error.code, "message": error.message}
