"""Stop sequences and max_tokens applied to answers fed piece by piece."""

from __future__ import annotations

from mcp_local_provider.mcp.output_limit import OutputLimiter, limit


def feed_all(limiter: OutputLimiter, pieces: list[str]) -> str:
    return "".join(limiter.feed(p) for p in pieces) + limiter.flush()


def test_text_without_limits_passes_through_unchanged() -> None:
    limiter = OutputLimiter()
    assert [limiter.feed("ab"), limiter.feed("cd"), limiter.flush()] == ["ab", "cd", ""]
    assert limiter.finish_reason is None


def test_stop_sequence_split_across_pieces_is_caught() -> None:
    limiter = OutputLimiter(["STOP"])
    assert limiter.feed("one ST") == "one "  # "ST" might begin STOP: held back
    assert limiter.feed("OP two") == ""
    assert limiter.finish_reason == "stop"
    assert limiter.feed("more") == "" and limiter.flush() == ""


def test_held_text_that_is_not_a_stop_sequence_is_released() -> None:
    limiter = OutputLimiter(["STOP"])
    assert limiter.feed("one ST") == "one "
    assert limiter.feed("ART") == "START"
    assert limiter.feed("ing S") == "ing "
    assert limiter.flush() == "S"
    assert limiter.finish_reason is None


def test_the_earliest_of_several_stop_sequences_wins() -> None:
    assert limit("a\n\nb###c", ["###", "\n\n"]) == ("a", "stop")


def test_max_tokens_cuts_at_four_characters_per_token() -> None:
    limiter = OutputLimiter(max_tokens=2)
    assert feed_all(limiter, ["abcde", "fghij"]) == "abcdefgh"
    assert limiter.finish_reason == "length"


def test_answer_exactly_at_the_limit_is_not_cut() -> None:
    assert limit("abcdefgh", max_tokens=2) == ("abcdefgh", None)


def test_max_tokens_reached_before_the_stop_sequence_reports_length() -> None:
    assert limit("abcdefgh STOP", ["STOP"], max_tokens=1) == ("abcd", "length")


def test_empty_stop_sequences_are_ignored() -> None:
    assert limit("abc", ["", "x"]) == ("abc", None)
