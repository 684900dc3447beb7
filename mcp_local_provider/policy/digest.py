"""The audit log's prompt digest: a keyed HMAC-SHA-256 over a canonical form of the agent
payload. No I/O.

The canonical form is built from the payload the router sends to the agent, never from the
HTTP body, so a prompt digests the same whichever route family (OpenAI or Ollama) carried it.
Version 1 (see docs/security.md):

- chat: ``{"kind":"chat","messages":[[role, text], ...]}`` where ``text`` is a string
  ``content`` as is, or the ``text`` of each text part joined with nothing, or ``""``;
- completion: ``{"kind":"completion","prompt":p,"suffix":s,"system":y}`` (missing: ``""``;
  the system text is the payload's ``system``, or else ``parameters.system``, where the Ollama
  route puts it);
- embedding: ``{"kind":"embedding","input":[text, ...]}`` (a lone string is a list of one);

serialised as JSON with sorted keys, no spaces and no ASCII escaping, encoded as UTF-8, and
prefixed with ``mcp-local-provider prompt v1\\n``. Images, tool-call arguments, the model name
and sampling parameters are not part of it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

ALGORITHM = "hmac-sha256"
PREFIX = b"mcp-local-provider prompt v1\n"

_encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def system_text(payload: Mapping[str, Any]) -> Any:
    """A completion's system text: top-level ``system``, or ``parameters.system``."""
    parameters = payload.get("parameters")
    nested = parameters.get("system") if isinstance(parameters, dict) else None
    return payload.get("system") or nested


def canonical(payload: Mapping[str, Any]) -> bytes:
    """The bytes the digest is computed over (see the module docstring)."""
    kind = payload.get("kind")
    form: dict[str, Any]
    if kind == "chat":
        messages = payload.get("messages") or []
        form = {
            "kind": "chat",
            "messages": [
                [str(m.get("role", "")), _text(m.get("content"))]
                for m in messages
                if isinstance(m, dict)
            ],
        }
    elif kind == "completion":
        form = {
            "kind": "completion",
            "prompt": _text(payload.get("prompt")),
            "suffix": _text(payload.get("suffix")),
            "system": _text(system_text(payload)),
        }
    elif kind == "embedding":
        items = payload.get("input")
        items = [items] if isinstance(items, str) else items or []
        form = {"kind": "embedding", "input": [_text(i) for i in items]}
    else:
        form = {"kind": str(kind)}
    return PREFIX + _encode(form).encode("utf-8")


class PromptDigester:
    """HMAC-SHA-256 with the per-install secret; ``key_id`` names the key without revealing it."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        self._key = key
        self.key_id = "sha256:" + hashlib.sha256(b"audit key id\n" + key).hexdigest()[:16]
        self.algorithm = ALGORITHM

    def digest(self, payload: Mapping[str, Any]) -> str:
        return hmac.new(self._key, canonical(payload), hashlib.sha256).hexdigest()
