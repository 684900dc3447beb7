"""Emulated features: stop sequences, the max_tokens cap, usage estimates, flattened prompts."""

from __future__ import annotations

from collections.abc import AsyncIterator

from mcp_local_provider.agent import BackendEvent, Finish, InvokeRequest, TextDelta, ToolCallDelta
from mcp_local_provider.agent.emulation import (
    Prompt,
    StopScanner,
    TokenBudget,
    emulate,
    estimate_tokens,
    flatten,
)
from tests.clis import chat, collect

ALL = {"stop", "max_tokens", "usage"}


def scan(stops: list[str], pieces: list[str]) -> tuple[list[str], bool, str]:
    scanner = StopScanner(stops)
    out = [scanner.feed(p) for p in pieces]
    return out, scanner.stopped, scanner.flush()


def test_stop_sequence_split_across_deltas_is_cut_before_it() -> None:
    out, stopped, _ = scan(["END"], ["abc E", "N", "D more"])
    assert "".join(out) == "abc "
    assert stopped


def test_text_that_cannot_start_a_stop_flows_at_once() -> None:
    out, stopped, _ = scan(["END"], ["abc", "xyz"])
    assert out == ["abc", "xyz"]
    assert not stopped


def test_only_a_possible_stop_prefix_is_held_back_and_flushed_at_the_end() -> None:
    out, stopped, held = scan(["\n\n"], ["line one\n"])
    assert out == ["line one"]
    assert (stopped, held) == (False, "\n")


def test_held_text_that_turns_out_harmless_is_released() -> None:
    out, _, _ = scan(["STOP"], ["go ST", "ART"])
    assert "".join(out) == "go START"


def test_the_earliest_of_several_stop_sequences_wins() -> None:
    out, stopped, _ = scan(["world", "lo"], ["hello world"])
    assert "".join(out) == "hel"
    assert stopped


def test_nothing_is_returned_after_a_stop() -> None:
    scanner = StopScanner(["x"])
    scanner.feed("axb")
    assert scanner.feed("more") == ""
    assert scanner.flush() == ""


def test_token_budget_cuts_at_four_characters_a_token() -> None:
    budget = TokenBudget(2)
    assert budget.take("abcde") == "abcde"
    assert not budget.exhausted
    assert budget.take("fghij") == "fgh"
    assert budget.exhausted


def test_estimate_rounds_up() -> None:
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]


async def _source(
    pieces: list[str], closed: list[bool], finish: Finish | None = None
) -> AsyncIterator[BackendEvent]:
    try:
        for piece in pieces:
            yield TextDelta(piece)
        if finish is not None:
            yield finish
    finally:
        closed.append(True)


async def test_emulated_stop_ends_with_stop_and_closes_the_backend() -> None:
    closed: list[bool] = []
    source = _source(["Hello ", "there! ", "How ", "are ", "you?"], closed)
    events = await collect(emulate(chat(stop=["How"]), source, ALL))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hello ", "there! "]
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "stop"
    assert finish.usage is not None and finish.usage["estimated"] is True
    assert closed == [True]


async def test_emulated_max_tokens_ends_with_length_and_estimated_usage() -> None:
    closed: list[bool] = []
    source = _source(["Hello ", "there! ", "How are you?"], closed)
    events = await collect(emulate(chat(max_tokens=2), source, ALL))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello th"
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.reason == "length"
    assert finish.usage == {
        "prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "estimated": True,
    }  # fmt: skip
    assert closed == [True]


async def test_reported_usage_is_kept_and_missing_usage_is_estimated() -> None:
    reported = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    with_usage = await collect(emulate(chat(), _source(["ok"], [], Finish("stop", reported)), ALL))
    without = await collect(emulate(chat(), _source(["okay"], [], Finish("stop")), ALL))
    assert with_usage[-1] == Finish("stop", reported)
    assert without[-1] == Finish(
        "stop", {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2, "estimated": True}
    )


async def test_held_back_text_is_sent_before_the_backends_finish() -> None:
    events = await collect(emulate(chat(stop=["!!"]), _source(["wow!"], [], Finish("stop")), ALL))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["wow", "!"]
    assert isinstance(events[-1], Finish)


async def test_features_not_asked_for_are_left_alone() -> None:
    finish = Finish("stop")
    source = _source(["a STOP b"], [], finish)
    events = await collect(emulate(chat(stop=["STOP"], max_tokens=1), source, set()))
    assert events == [TextDelta("a STOP b"), finish]


async def test_tool_call_events_pass_through() -> None:
    async def source() -> AsyncIterator[BackendEvent]:
        yield ToolCallDelta(0, "call_1", "f", "{}")
        yield Finish("tool_calls")

    events = await collect(emulate(chat(stop=["x"]), source(), ALL))
    assert events[0] == ToolCallDelta(0, "call_1", "f", "{}")
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool_calls"


def test_a_lone_user_message_is_the_prompt_and_system_text_is_apart() -> None:
    prompt = flatten(
        chat(
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
        )
    )
    assert prompt == Prompt("Be brief.", "Hi")
    assert prompt.inline() == "<instructions>\nBe brief.\n</instructions>\n\nHi"


def test_a_history_becomes_a_transcript_with_tool_calls() -> None:
    messages = [
        {"role": "developer", "content": [{"type": "text", "text": "Rules."}]},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "c1", "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
        }]},
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
        {"role": "user", "content": "So?"},
    ]  # fmt: skip
    prompt = flatten(chat(messages=messages))
    assert prompt.system == "Rules."
    assert "<user>\nWeather?\n</user>" in prompt.text
    assert '[called tool weather with {"city":"Oslo"}]' in prompt.text
    assert '<tool_result name="c1">\nrain\n</tool_result>' in prompt.text
    assert prompt.text.endswith("<user>\nSo?\n</user>")


def test_a_completion_with_a_suffix_asks_for_the_middle() -> None:
    request = InvokeRequest(id="r", kind="completion", model="m", prompt="def f(", suffix="):")
    prompt = flatten(request)
    assert "between <prefix> and <suffix>" in prompt.system
    assert prompt.text == "<prefix>\ndef f(\n</prefix>\n<suffix>\n):\n</suffix>"
