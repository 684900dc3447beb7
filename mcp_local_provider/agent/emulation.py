"""What a backend lacks, emulated around it: stop sequences, an approximate ``max_tokens`` cap,
usage estimates, and one prompt made from a chat history for tools that take a single prompt.

Everything here is pure except ``emulate``, which wraps a backend's event stream.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp_local_provider.agent.events import BackendEvent, Finish, InvokeRequest, TextDelta, text_of

#: Features ``emulate`` can provide: a backend lists the ones it lacks in ``Backend.emulated``.
FEATURES = frozenset({"stop", "max_tokens", "usage"})

#: A rough average for English text and code; estimates are marked ``"estimated": true``.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is (ceil of characters / 4)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimated_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "estimated": True,
    }


class StopScanner:
    """Cuts a text stream at the first stop sequence.

    It holds back only the end of the text that could still become a stop sequence, so text
    flows on as soon as it cannot be part of one.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._held = ""

    def feed(self, text: str) -> str:
        """The text that is safe to send now. Sets ``stopped`` when a stop sequence appears;
        the text before it is returned and everything after is dropped."""
        if self.stopped:
            return ""
        buffer = self._held + text
        found = [i for i in (buffer.find(s) for s in self.stops) if i >= 0]
        if found:
            self.stopped = True
            self._held = ""
            return buffer[: min(found)]
        keep = self._partial_match(buffer)
        self._held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """The held-back text, once the stream has ended without a stop sequence."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _partial_match(self, buffer: str) -> int:
        """Length of the longest end of ``buffer`` that begins some stop sequence."""
        best = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(buffer)), best, -1):
                if buffer.endswith(stop[:size]):
                    best = size
                    break
        return best


class TokenBudget:
    """An approximate ``max_tokens`` cap, counted as ``CHARS_PER_TOKEN`` characters a token."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.left = max_tokens * CHARS_PER_TOKEN
        self.exhausted = False

    def take(self, text: str) -> str:
        """The part of ``text`` that fits; sets ``exhausted`` when some of it did not."""
        if len(text) > self.left:
            self.exhausted = True
            text = text[: self.left]
        self.left -= len(text)
        return text


@asynccontextmanager
async def closing(
    events: AsyncIterator[BackendEvent],
) -> AsyncIterator[AsyncIterator[BackendEvent]]:
    """``async with closing(backend.run(request)) as events:`` closes the stream however the
    block is left, so a backend's clean-up (stopping its process) runs at once."""
    try:
        yield events
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


class Emulation:
    """The emulated ``features`` for one request, applied event by event. Pure."""

    def __init__(self, request: InvokeRequest, features: Collection[str]) -> None:
        self.request = request
        self.features = frozenset(features)
        self.stops = StopScanner(request.stop) if "stop" in features and request.stop else None
        limit = request.max_tokens if "max_tokens" in features else None
        self.budget = TokenBudget(limit) if limit else None
        #: True once the answer was cut (stop sequence or cap): the backend should stop.
        self.cut = False
        self._sent: list[str] = []

    def text(self, text: str) -> list[BackendEvent]:
        """What to send for a text delta; ends with a Finish if the answer is cut here."""
        out = self._pass(self.stops.feed(text) if self.stops is not None else text)
        if self.budget is not None and self.budget.exhausted:
            out.append(Finish("length", self._estimate()))
        elif self.stops is not None and self.stops.stopped:
            out.append(Finish("stop", self._estimate()))
        self.cut = bool(out) and isinstance(out[-1], Finish)
        return out

    def finish(self, finish: Finish | None) -> list[BackendEvent]:
        """What to send when the backend finishes (``None``: it ended without a Finish)."""
        out = self._pass(self.stops.flush() if self.stops is not None else "")
        if self.budget is not None and self.budget.exhausted:
            out.append(Finish("length", self._estimate()))
            return out
        reason, usage = (finish.reason, finish.usage) if finish is not None else ("stop", None)
        if usage is None and "usage" in self.features:
            usage = self._estimate()
        out.append(Finish(reason, usage))
        return out

    def _pass(self, text: str) -> list[BackendEvent]:
        if self.budget is not None:
            text = self.budget.take(text)
        if not text:
            return []
        self._sent.append(text)
        return [TextDelta(text)]

    def _estimate(self) -> dict[str, Any]:
        return estimated_usage(
            estimate_tokens(prompt_text(self.request)), estimate_tokens("".join(self._sent))
        )


async def emulate(
    request: InvokeRequest,
    events: AsyncIterator[BackendEvent],
    features: Collection[str],
) -> AsyncIterator[BackendEvent]:
    """Apply the emulated ``features`` to a backend's ``events`` for ``request``.

    On a stop sequence or the ``max_tokens`` cap the answer ends (``stop`` or ``length``, with
    estimated usage) and ``events`` is closed at once, so the backend stops its work.
    """
    emulation = Emulation(request, features)
    async with closing(events):
        async for event in events:
            if isinstance(event, TextDelta):
                for out in emulation.text(event.text):
                    yield out
                if emulation.cut:
                    return
            elif isinstance(event, Finish):
                for out in emulation.finish(event):
                    yield out
                return
            else:
                yield event
    for out in emulation.finish(None):
        yield out


# -- one prompt from a request --------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A request as one prompt: ``system`` for a CLI's system-prompt option, ``text`` for stdin."""

    system: str
    text: str

    def inline(self) -> str:
        """System text and prompt as one text, for tools without a system-prompt option."""
        if not self.system:
            return self.text
        return f"<instructions>\n{self.system}\n</instructions>\n\n{self.text}"

    def followed_by(self, note: str) -> Prompt:
        """This prompt with ``note`` after its text (a repair request, say)."""
        return Prompt(self.system, f"{self.text}\n\n{note}")

    def with_system(self, extra: str) -> Prompt:
        """This prompt with ``extra`` after its system text."""
        return Prompt("\n\n".join(t for t in (self.system, extra) if t), self.text)


_SYSTEM_ROLES = ("system", "developer")

_TRANSCRIPT_INTRO = (
    "Below is a conversation. Write the assistant's next message. Reply with that message "
    "only, without a role label."
)

_CONTINUE = (
    "Continue the text you are given. Reply with the continuation only: no preamble, no "
    "explanation, no code fences, and do not repeat the given text."
)

_FILL_IN = (
    "Write the text that belongs between <prefix> and <suffix>. Reply with that text only: no "
    "preamble, no explanation, no code fences, and do not repeat the prefix or the suffix."
)


def flatten(request: InvokeRequest) -> Prompt:
    """One prompt for ``request``: chat messages become a transcript (a lone user message
    stays as it is), a completion becomes a continue or fill-in-the-middle instruction."""
    if request.kind == "completion":
        prefix = request.prompt or ""
        if request.suffix:
            return Prompt(
                _FILL_IN, f"<prefix>\n{prefix}\n</prefix>\n<suffix>\n{request.suffix}\n</suffix>"
            )
        return Prompt(_CONTINUE, prefix)
    system = "\n\n".join(
        text
        for m in request.messages
        if m.get("role") in _SYSTEM_ROLES
        if (text := text_of(m.get("content")))
    )
    turns = [m for m in request.messages if m.get("role") not in _SYSTEM_ROLES]
    if len(turns) == 1 and turns[0].get("role") == "user":
        return Prompt(system, text_of(turns[0].get("content")))
    parts = [_TRANSCRIPT_INTRO]
    parts.extend(_turn(m) for m in turns)
    return Prompt(system, "\n\n".join(parts))


def _turn(message: dict[str, Any]) -> str:
    role = str(message.get("role") or "user")
    body = text_of(message.get("content"))
    if role == "tool" or role == "function":
        name = message.get("name") or message.get("tool_call_id") or ""
        return f'<tool_result name="{name}">\n{body}\n</tool_result>'
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        body += f"\n[called tool {function.get('name')} with {arguments}]"
    return f"<{role}>\n{body.strip()}\n</{role}>"


def prompt_text(request: InvokeRequest) -> str:
    """All the prompt text of a request, for estimating its tokens."""
    if request.kind == "completion":
        return (request.prompt or "") + (request.suffix or "")
    if request.kind == "embedding":
        return "".join(request.input)
    return "\n".join(text_of(m.get("content")) for m in request.messages)
