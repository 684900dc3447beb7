"""Route families: the classifier the guards, error shapes and metrics share."""

from __future__ import annotations

import pytest

from mcp_local_provider.core import errors
from mcp_local_provider.http.families import route_family
from mcp_local_provider.http.middleware.errors import error_body


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/v1/messages", "anthropic"),
        ("/v1/messages/count_tokens", "anthropic"),
        ("/v1/messagesx", "openai"),
        ("/v1/responses", "openai"),
        ("/v1/chat/completions", "openai"),
        ("/api/chat", "ollama"),
    ],
)
def test_anthropic_paths_are_their_own_family(path: str, family: str) -> None:
    assert route_family(path) == family


def test_each_family_gets_its_error_shape() -> None:
    error = errors.ModelNotFound("no such model")
    assert error_body("/v1/messages", error) == {
        "type": "error",
        "error": {"type": "not_found_error", "message": "no such model"},
    }
    assert error_body("/v1/responses", error)["error"]["code"] == "model_not_found"
    assert error_body("/api/chat", error) == {"error": "no such model"}
