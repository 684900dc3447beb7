"""The daemon's OpenAPI document (``GET /openapi.json``), generated from the same pydantic models
that validate request bodies, so it cannot drift from what the routes accept.

Each route module lists its ``operations``; ``document`` turns them into OpenAPI 3.1 with each
route family's error shape, the one every 4xx and 5xx of that family has.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from mcp_local_provider import __version__
from mcp_local_provider.http.families import ANTHROPIC, CONTROL, OLLAMA, OPENAI, route_family

_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Operation:
    """One route as the document shows it."""

    method: str
    #: The OpenAPI path template (``/v1/models/{model}``).
    path: str
    summary: str
    body: type[BaseModel] | None = None
    #: Needs the bridge token (the control API).
    bridge_token: bool = False
    #: What a successful answer is: JSON, or a stream of it.
    media_types: tuple[str, ...] = ("application/json",)
    status: int = 200


_ERRORS: dict[str, dict[str, Any]] = {
    OPENAI: {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    ANTHROPIC: {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    OLLAMA: {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    CONTROL: {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "code"],
                "properties": {"message": {"type": "string"}, "code": {"type": "string"}},
            }
        },
    },
}
_ERROR_NAMES = {
    OPENAI: "OpenAIError",
    ANTHROPIC: "AnthropicError",
    OLLAMA: "OllamaError",
    CONTROL: "ControlError",
}


def document(operations: Iterable[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``operations``."""
    operations = list(operations)
    bodies = sorted({op.body for op in operations if op.body is not None}, key=lambda m: m.__name__)
    refs, definitions = models_json_schema(
        [(model, "validation") for model in bodies], ref_template=_REF
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    for family, name in _ERROR_NAMES.items():
        schemas[name] = _ERRORS[family]
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "operationId": f"{op.method}_{op.path}",
            "responses": _responses(op),
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_parameters(op.path)
        ]
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        if op.bridge_token:
            entry["security"] = [{"bridgeToken": []}]
        paths.setdefault(op.path, {})[op.method] = entry
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "mcp-local-provider",
            "version": __version__,
            "description": "A local model server whose answers come from approved AI agents: "
            "the OpenAI API under /v1 (chat completions and Responses), Anthropic's Messages "
            "API at /v1/messages, the Ollama API under /api, and the control API.",
        },
        "servers": [{"url": "http://127.0.0.1:11434"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bridgeToken": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "http", "scheme": "bearer"},
            },
        },
    }


def _responses(op: Operation) -> dict[str, Any]:
    ok = {
        "description": "the answer",
        "content": {media: {} for media in op.media_types},
    }
    responses: dict[str, Any] = {str(op.status): ok}
    name = _ERROR_NAMES.get(route_family(op.path))
    if name is not None:
        error = {
            "description": "an error, in this API's own shape",
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=name)}}},
        }
        responses["4XX"] = error
        responses["5XX"] = error
    else:
        responses["default"] = {"description": "an error or a status", "content": {}}
    return responses


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]
