"""Stop sequences and max_tokens for answers that come from an agent or a host model.

Neither an agent answering through tools nor a host answering a sampling request is bound to
the editor's ``stop`` and ``max_tokens`` (VS Code ignores both), so the answer is cut here, as
the editor expects from a model server.

This is a small local version: when the agent SDK gains a shared emulation module
(``mcp_local_provider.agent.emulation``), ``OutputLimiter`` should be replaced by it.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A rough size of a token; good enough to honour a limit, and the same for every answer.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


class OutputLimiter:
    """Cut text fed piece by piece at the first stop sequence or at ``max_tokens``.

    ``feed`` returns what may be sent now: text that could be the start of a stop sequence is
    held back until the next piece shows whether it is one. ``flush`` releases what is held at
    the end. Once a limit is hit, ``finish_reason`` is ``"stop"`` or ``"length"`` and further
    text is dropped.
    """

    def __init__(self, stop: Sequence[str] = (), max_tokens: int | None = None) -> None:
        self._stops = [s for s in stop if s]
        self._budget = None if max_tokens is None else max(0, max_tokens) * CHARS_PER_TOKEN
        self._held = ""
        self.emitted = 0
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def feed(self, text: str) -> str:
        if self.done:
            return ""
        buffer, self._held = self._held + text, ""
        cut = self._first_stop(buffer)
        if cut is not None:
            buffer = buffer[:cut]
            self.finish_reason = "stop"
        else:
            keep = self._partial_stop(buffer)
            if keep:
                buffer, self._held = buffer[:-keep], buffer[-keep:]
        return self._spend(buffer)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.done else self._spend(held)

    def _first_stop(self, text: str) -> int | None:
        found = [i for i in (text.find(s) for s in self._stops) if i >= 0]
        return min(found) if found else None

    def _partial_stop(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins some stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def _spend(self, text: str) -> str:
        if self._budget is not None:
            room = self._budget - self.emitted
            if len(text) > room:
                text = text[: max(room, 0)]
                self.finish_reason = "length"
        self.emitted += len(text)
        return text


def limit(
    text: str, stop: Sequence[str] = (), max_tokens: int | None = None
) -> tuple[str, str | None]:
    """Apply the limits to a whole answer: (the text to send, "stop"/"length" or None)."""
    limiter = OutputLimiter(stop, max_tokens)
    out = limiter.feed(text) + limiter.flush()
    return out, limiter.finish_reason
