"""What an agent's error says about trying elsewhere, the cool-down it earns, the order of
fallbacks, and the loops the config refuses: pure, synchronous, exact."""

from __future__ import annotations

import pytest

from mcp_local_provider.core.config.models import fallback_cycle
from mcp_local_provider.core.refusal import MAX_RETRY_AFTER, Refusal, cooldown, refusal_of
from mcp_local_provider.core.router import Failover
from mcp_local_provider.core.selection import conversation_key

WEEK = MAX_RETRY_AFTER


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        ({"code": "rate_limited", "retry_after": 30}, Refusal("quota", "rate_limited", 30.0)),
        ({"code": "upstream_rate_limited"}, Refusal("quota", "upstream_rate_limited", None)),
        ({"code": "quota_exceeded", "retry_after": -5}, Refusal("quota", "quota_exceeded", None)),
        ({"code": "usage_limit", "retry_after": 1e12}, Refusal("quota", "usage_limit", WEEK)),
        ({"code": "overloaded"}, Refusal("retryable", "overloaded", None)),
        ({"code": "backend_error", "retryable": True}, Refusal("retryable", "backend_error", None)),
        ({"code": "backend_error", "message": "bad prompt"}, None),
        ({"code": "rate_limited", "retry_after": "soon"}, Refusal("quota", "rate_limited", None)),
        (None, None),
    ],
)  # fmt: skip
def test_an_agents_error_is_a_refusal_a_retryable_error_or_final(
    error: dict[str, object] | None, expected: Refusal | None
) -> None:
    assert refusal_of(error) == expected


def test_the_cool_down_is_the_reset_time_else_a_doubling_backoff() -> None:
    assert cooldown(120, strikes=3, initial=30, longest=3600) == 120
    assert cooldown(0.2, strikes=1, initial=30, longest=3600) == 1.0  # at least a second
    assert [cooldown(None, n, 30, 100) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_fallbacks_are_tried_in_order_each_once_fallbacks_of_fallbacks_last() -> None:
    failover = Failover(fallbacks={"a": ("b", "c"), "b": ("d", "c"), "d": ("a",)})
    assert failover.chain("a") == ("b", "c", "d")
    assert failover.chain("z") == ()


def test_a_loop_among_fallbacks_is_found_and_named() -> None:
    assert fallback_cycle({"a": ("b",), "b": ("c",), "c": ("a",)}) == ["a", "b", "c", "a"]
    assert fallback_cycle({"a": ("b", "c"), "b": ("c",)}) == []


def test_a_conversation_is_its_system_prompt_and_first_user_message() -> None:
    first = {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    }
    later = {"messages": [*first["messages"], {"role": "assistant", "content": "hello"},
                          {"role": "user", "content": "and?"}]}  # fmt: skip
    other = {
        "messages": [{"role": "system", "content": "be long"}, {"role": "user", "content": "hi"}]
    }
    assert conversation_key(first) == conversation_key(later) != conversation_key(other)
    assert conversation_key({"prompt": "def f("}) is None
