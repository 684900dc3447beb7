"""Helpers the OpenAI and Ollama translations share."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .. import errors

M = TypeVar("M", bound=BaseModel)

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    """Compact JSON, as sent on the wire."""
    return _compact(value)


def parse_body(model: type[M], body: bytes) -> M:
    """Validate a request body, or raise BadRequest naming the first bad field."""
    if not body.strip():
        raise errors.BadRequest("the request body is empty; send a JSON object")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> errors.BadRequest:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    if first["type"] == "json_invalid":
        return errors.BadRequest("the request body is not valid JSON")
    if first["type"] == "model_type" or not loc:
        return errors.BadRequest("the request body must be a JSON object")
    message = first["msg"]
    if first["type"] == "missing":
        message = "is required"
    return errors.BadRequest(f"{loc}: {message}", param=loc)


def merge_tool_call(calls: list[dict[str, Any]], delta: dict[str, Any]) -> None:
    """Fold one streamed tool-call fragment into the list of whole calls."""
    index = delta.get("index", len(calls))
    while len(calls) <= index:
        calls.append({"id": None, "type": "function", "function": {"name": "", "arguments": ""}})
    call = calls[index]
    if delta.get("id"):
        call["id"] = delta["id"]
    function = delta.get("function") or {}
    if function.get("name"):
        call["function"]["name"] = function["name"]
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        call["function"]["arguments"] += arguments
    elif arguments is not None:
        call["function"]["arguments"] += dumps(arguments)
