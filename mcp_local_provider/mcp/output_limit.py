"""Stop sequences and max_tokens for answers that come from an agent or a host model.

Neither an agent answering through tools nor a host answering a sampling request is bound to
the editor's ``stop`` and ``max_tokens`` (VS Code ignores both), so the answer is cut here, as
the editor expects from a model server. The cutting itself is the agent library's shared
emulation; this module adapts it to answers that arrive as pieces of text.
"""

from __future__ import annotations

from collections.abc import Sequence

from mcp_local_provider.agent.emulation import (
    CHARS_PER_TOKEN,
    StopScanner,
    TokenBudget,
    estimate_tokens,
)

__all__ = ["CHARS_PER_TOKEN", "OutputLimiter", "estimate_tokens", "limit"]


class OutputLimiter:
    """Cut text fed piece by piece at the first stop sequence or at ``max_tokens``.

    ``feed`` returns what may be sent now: text that could be the start of a stop sequence is
    held back until the next piece shows whether it is one. ``flush`` releases what is held at
    the end. Once a limit is hit, ``finish_reason`` is ``"stop"`` or ``"length"`` and further
    text is dropped.
    """

    def __init__(self, stop: Sequence[str] = (), max_tokens: int | None = None) -> None:
        self._scanner = StopScanner(stop)
        self._budget = None if max_tokens is None else TokenBudget(max(0, max_tokens))
        self.emitted = 0
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def feed(self, text: str) -> str:
        if self.done:
            return ""
        out = self._scanner.feed(text)
        if self._scanner.stopped:
            self.finish_reason = "stop"
        return self._spend(out)

    def flush(self) -> str:
        return "" if self.done else self._spend(self._scanner.flush())

    def _spend(self, text: str) -> str:
        if self._budget is not None:
            text = self._budget.take(text)
            if self._budget.exhausted:
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
