"""Which session made each recent tool call, so that the request carrying its result goes back
to that session: an agent may hold the turn that made the call open (its CLI process waiting
for the result, see docs/agents.md) and continue it there instead of starting afresh.

The router records the ids of the tool calls it relays from a session's answers and, when a
request's messages end with tool results, prefers the session that made those calls if it is
free to take the request. A bounded table: the oldest ids are forgotten first. No I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from mcp_local_provider.core.protocol import AnswerFrame, ModelResult

#: Tool-call ids remembered (the oldest forgotten past it).
HELD_SIZE = 4096


class ToolCallOwners:
    """Tool-call id -> the id of the session whose answer made the call."""

    def __init__(self, size: int = HELD_SIZE) -> None:
        self.size = size
        self._owners: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._owners)

    def relayed(self, session_id: str, frame: AnswerFrame) -> None:
        """Note the ids of the tool calls in ``frame``, an answer of ``session_id``."""
        for call_id in _call_ids(frame):
            self._owners[call_id] = session_id
            self._owners.move_to_end(call_id)
            if len(self._owners) > self.size:
                self._owners.popitem(last=False)

    def owner(self, payload: Mapping[str, Any]) -> str | None:
        """The session that made the calls whose results ``payload``'s messages end with, if
        one session made them all; else None."""
        messages = payload.get("messages")
        if not isinstance(messages, list):
            return None
        owners: set[str | None] = set()
        for message in reversed(messages):
            if not isinstance(message, dict) or message.get("role") != "tool":
                break
            owners.add(self._owners.get(str(message.get("tool_call_id"))))
        if len(owners) != 1:
            return None
        return owners.pop()


def _call_ids(frame: AnswerFrame) -> Iterable[str]:
    if isinstance(frame, ModelResult):
        choices = (frame.result or {}).get("choices") or ()
        deltas = [c.get("message") or {} for c in choices]
    else:
        deltas = [frame.delta]
    for delta in deltas:
        for call in delta.get("tool_calls") or ():
            call_id = call.get("id")
            if call_id:
                yield str(call_id)
