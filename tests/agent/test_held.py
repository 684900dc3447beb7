"""Held tool turns without a CLI (agent/held.py): which requests continue a turn, and each
waiting MCP call given the result of its own call when the calls were parallel."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from mcp_local_provider.agent.events import BackendEvent, Finish, ToolCallDelta
from mcp_local_provider.agent.held import NOT_HANDED, Channel, HeldTurn, HeldTurns
from mcp_local_provider.agent.tools import EditorTools
from tests.clis import chat

QUESTION = {"role": "user", "content": "Weather in Tokyo and Oslo?"}
CALLS = [
    ToolCallDelta(0, id="call_a", name="w", arguments='{"city": "Tokyo"}'),
    ToolCallDelta(1, id="call_b", name="w", arguments='{"city": "Oslo"}'),
]


def results(before: list[dict[str, Any]], *answers: tuple[str, str]) -> list[dict[str, Any]]:
    calls = [{"id": c.id, "function": {"name": c.name, "arguments": c.arguments}} for c in CALLS]
    message = {"role": "assistant", "content": "", "tool_calls": calls}
    tool = [{"role": "tool", "tool_call_id": i, "content": text} for i, text in answers]
    return [*before, message, *tool]


async def idle() -> AsyncGenerator[BackendEvent, None]:
    yield Finish("stop")


def held(tmp_path: Path) -> tuple[HeldTurns, HeldTurn]:
    tools = EditorTools((), False, None, True, tmp_path)
    turn = HeldTurn(idle(), Channel(tmp_path), tools)
    turn.handed(CALLS, chat(messages=[QUESTION]))
    turns = HeldTurns(30)
    turns.hold(turn)
    return turns, turn


async def test_the_results_of_every_call_after_the_same_conversation_continue_the_turn(
    tmp_path: Path,
) -> None:
    turns, turn = held(tmp_path)
    # Only one of the two parallel calls answered: not a continuation, and the turn is ended.
    assert turns.take(chat(messages=results([QUESTION], ("call_a", "sunny")))) is None
    assert len(turns) == 0
    turns, turn = held(tmp_path)
    both = chat(messages=results([QUESTION], ("call_b", "snow"), ("call_a", "sunny")))
    assert turns.take(both) == (turn, {"call_a": "sunny", "call_b": "snow"})
    assert len(turns) == 0


async def test_a_changed_conversation_ends_the_turn(tmp_path: Path) -> None:
    turns, _ = held(tmp_path)
    other = {"role": "user", "content": "Weather in Paris?"}
    answers = (("call_a", "sunny"), ("call_b", "snow"))
    assert turns.take(chat(messages=results([other], *answers))) is None
    assert len(turns) == 0


async def ask(path: Path, arguments: dict[str, Any], name: str = "w") -> dict[str, Any]:
    """What the tool server does for one waiting call: ask the run for its result."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(json.dumps({"name": name, "arguments": arguments}).encode() + b"\n")
    reply = json.loads(await reader.readline())
    writer.close()
    return dict(reply)


async def test_each_waiting_call_gets_the_result_of_its_own_call(tmp_path: Path) -> None:
    channel = Channel(tmp_path)
    await channel.open()
    calls = {c.id or "": (c.name or "", c.arguments) for c in CALLS}
    dropped = [("read", '{"path": "x"}')]
    answering = asyncio.create_task(
        channel.answer(calls, {"call_a": "sunny", "call_b": "snow"}, dropped)
    )
    try:
        # The CLI asks for the second call first.
        assert (await ask(channel.path, {"city": "Oslo"}))["text"] == "snow"
        # A call whose arguments read differently, while this answer's calls wait, is one of
        # them.
        assert (await ask(channel.path, {"city": "TOKYO"}))["text"] == "sunny"
        # A call of the turn's next answer, asked before this answer's last call.
        later = asyncio.create_task(ask(channel.path, {"city": "Paris"}))
        # A call of the same answer the editor was never given is answered at once, with an
        # error.
        refused = await asyncio.wait_for(ask(channel.path, {"path": "x"}, "read"), 5)
        assert refused == {"text": NOT_HANDED, "isError": True}
        await asyncio.wait_for(answering, 5)
        # The later answer's call waits for its own result.
        assert not later.done()
        await channel.answer({"call_c": ("w", '{"city": "Paris"}')}, {"call_c": "rain"})
        assert (await asyncio.wait_for(later, 5))["text"] == "rain"
    finally:
        answering.cancel()
        await channel.close()


async def test_a_turn_holding_a_call_id_already_held_ends_the_older_turn(tmp_path: Path) -> None:
    turns, older = held(tmp_path)
    newer = HeldTurn(idle(), Channel(tmp_path), older.tools)
    newer.handed(CALLS, chat(messages=[QUESTION]))
    turns.hold(newer)
    assert len(turns) == 1
    await turns.close()
    assert len(turns) == 0
