"""Structured output for agents that have no JSON mode of their own: the answer is asked for as
JSON (``response_format`` ``json_object`` or ``json_schema``; Ollama's ``format`` arrives as
the same), held back until it is whole, checked (JSON, an object for ``json_object``, valid
against the schema with ``jsonschema``), and sent as one piece. A bad answer gets one repair
round; a second one is a BackendError."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import structlog

from mcp_local_provider.agent.backend import BackendError
from mcp_local_provider.agent.emulation import Prompt
from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest, TextDelta
from mcp_local_provider.agent.tools import schema_error

log = structlog.get_logger("mcp_local_provider.agent.structured")

REPAIR = (
    "<correction>\nYour previous answer could not be used: {problem}. Answer again with the "
    "JSON only.\n</correction>"
)


@dataclass(frozen=True)
class OutputFormat:
    """What ``response_format`` asks: any JSON object, or a value matching ``schema``."""

    schema: dict[str, Any] | None

    @property
    def json_schema(self) -> dict[str, Any]:
        """The schema to give a CLI's own JSON mode (any object for ``json_object``)."""
        return self.schema if self.schema is not None else {"type": "object"}

    @classmethod
    def of(cls, request: InvokeRequest) -> OutputFormat | None:
        wanted = request.parameters.get("response_format")
        if not isinstance(wanted, dict):
            return None
        if wanted.get("type") == "json_object":
            return cls(None)
        if wanted.get("type") == "json_schema":
            schema = (wanted.get("json_schema") or {}).get("schema")
            return cls(schema if isinstance(schema, dict) else None)
        return None

    def instructions(self) -> str:
        if self.schema is None:
            return "Answer with a single JSON object only: no prose, no code fences."
        return (
            "Answer with a single JSON value only (no prose, no code fences) that matches this "
            f"JSON schema:\n{json.dumps(self.schema)}"
        )

    def problem(self, text: str) -> str | None:
        """Why ``text`` is not an acceptable answer, or None."""
        try:
            value = json.loads(text)
        except ValueError as exc:
            return f"it is not JSON ({exc})"
        if self.schema is None:
            return None if isinstance(value, dict) else "it is not a JSON object"
        found = schema_error(self.schema, value)
        return None if found is None else f"it does not match the schema: {found}"


def unfenced(text: str) -> str:
    """``text`` without surrounding whitespace and one Markdown code fence, if it has one."""
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and "\n" in stripped:
        return stripped[stripped.index("\n") + 1 : -3].strip()
    return stripped


async def structured(
    run: Callable[[Prompt], AsyncGenerator[BackendEvent, None]],
    prompt: Prompt,
    wanted: OutputFormat,
) -> AsyncGenerator[BackendEvent, None]:
    """``run(prompt)``'s events with its text held back, checked against ``wanted`` and sent
    whole once it passes; one repair round, then a BackendError."""
    prompt = prompt.with_system(wanted.instructions())
    for attempt in (1, 2):
        parts: list[str] = []
        finish: Finish | None = None
        async with aclosing(run(prompt)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                elif isinstance(event, Finish):
                    finish = event
                    break
                else:
                    yield event
        text = unfenced("".join(parts))
        problem = wanted.problem(text)
        if problem is None:
            yield TextDelta(text)
            if finish is not None:
                yield finish
            return
        if attempt == 2:
            raise BackendError(
                "the agent's answer does not match the response format, even after a repair "
                f"round: {problem}",
                "invalid_output",
            )
        log.info("structured_output_repair", problem=problem)
        prompt = prompt.followed_by(REPAIR.format(problem=problem))
