"""Input limits on what an editor asks an agent to do, checked on the agent payload. No I/O.

The checks read the payload every route builds (``kind`` and ``messages``, ``prompt`` and
``suffix``, or ``input``), so they hold for the OpenAI and Ollama routes alike.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcp_local_provider.core import errors
from mcp_local_provider.core.names import MODEL_NAME_PATTERN
from mcp_local_provider.policy.digest import system_text

#: Session ids as the registry makes them (``sess-`` and 16 hex digits).
SESSION_ID_PATTERN = re.compile(r"^sess-[0-9a-f]{16}$")


def check_model_name(name: str) -> None:
    """Model names: letters, digits and ``. _ : @ / + -``; no ``..``, ``//`` or trailing ``/``."""
    if not MODEL_NAME_PATTERN.match(name):
        raise errors.BadRequest(
            "model: must be 1-200 letters, digits and . _ : @ / + - "
            "(no '..', '//' or trailing '/')",
            param="model",
        )


def check_session_id(value: str, *, param: str) -> None:
    if not SESSION_ID_PATTERN.match(value):
        raise errors.BadRequest(f"{param}: not a session id (sess- and 16 hex digits)", param=param)


def text_size(value: Any) -> int:
    """Characters of text in a JSON value: every string in it, keys excluded."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(text_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(text_size(v) for v in value)
    return 0


@dataclass(frozen=True)
class InputLimits:
    max_messages: int
    max_message_chars: int
    max_request_chars: int

    def check(self, kind: str, model: str, payload: Mapping[str, Any]) -> None:
        """Raise BadRequest (400) if the payload is over a limit or its model name is unsafe."""
        check_model_name(model)
        if kind == "chat":
            self._items(payload.get("messages") or [], "messages")
        elif kind == "embedding":
            self._items(payload.get("input") or [], "input")
        else:
            prompt = text_size(payload.get("prompt")) + text_size(payload.get("suffix"))
            self._total(prompt + text_size(system_text(payload)))

    def _items(self, items: list[Any], param: str) -> None:
        if len(items) > self.max_messages:
            raise errors.BadRequest(
                f"{param}: {len(items)} items is more than the limit of {self.max_messages}",
                param=param,
            )
        total = 0
        for index, item in enumerate(items):
            size = text_size(item)
            if size > self.max_message_chars:
                raise errors.BadRequest(
                    f"{param}.{index}: {size} characters is more than the limit of "
                    f"{self.max_message_chars}",
                    param=f"{param}.{index}",
                )
            total += size
        self._total(total)

    def _total(self, total: int) -> None:
        if total > self.max_request_chars:
            raise errors.BadRequest(
                f"the request has {total} characters of text, more than the limit of "
                f"{self.max_request_chars}"
            )
