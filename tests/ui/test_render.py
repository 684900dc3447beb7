"""The page's HTML and chart, from data built here: exact escaping of every value an agent
or an editor chose, the states in words, and the chart's bars."""

from __future__ import annotations

import re
import time

from mcp_local_provider.core.protocol import ModelSpec
from mcp_local_provider.core.registry import Session, SessionState
from mcp_local_provider.http.ui import render
from mcp_local_provider.http.ui.chart import usage_chart
from mcp_local_provider.obs.traffic import MAX_SESSIONS_SEEN, Passed, Traffic
from tests.ui.pages import Row

HOSTILE = '"><script>alert(1)</script><img src=x onerror=alert(2)>&amp;'


def session(state: SessionState = SessionState.PENDING, **fields: object) -> Session:
    values: dict[str, object] = {
        "id": "sess-0123456789abcdef",
        "agent_id": "agent-1",
        "label": HOSTILE,
        "models": (ModelSpec(name="m1"),),
        "requested_scopes": ("inference",),
        "scopes": ("inference",),
        "ttl_seconds": 3600.0,
        "max_requests": 10,
        "max_concurrency": 2,
        "reason": HOSTILE,
        "state": state,
        "created_at": 100.0,
        **fields,
    }
    return Session(**values)  # type: ignore[arg-type]


def panels(*sessions: Session, **fields: object) -> render.Panels:
    values: dict[str, object] = {
        "sessions": sessions,
        "now": 200.0,
        "csrf": "token-1",
        "usage": None,
        "traffic": [],
        **fields,
    }
    return render.Panels(**values)  # type: ignore[arg-type]


def test_hostile_labels_and_reasons_are_escaped_wherever_they_show() -> None:
    active = session(SessionState.ACTIVE, id="sess-1111111111111111", expires_at=900.0)
    html = render.render_panels(
        panels(
            session(),
            active,
            usage=[Row("2026-12-05", HOSTILE, HOSTILE)],
            traffic=[Passed(1.0, "POST", "/v1/chat/completions", 200, 1.0, HOSTILE, "s", HOSTILE)],
            notice=HOSTILE,
        )
    )
    assert "<script" not in html and "<img" not in html
    escaped = (
        "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&amp;amp;"
    )
    assert html.count(escaped) >= 6  # label x2, reason, usage session and model, traffic, notice


def test_the_login_page_shows_nothing_but_how_to_log_in() -> None:
    html = render.login_page(HOSTILE)
    assert "mcp-local-provider ui --open" in html and "<script>alert" not in html
    assert 'name="csrf"' not in html


def test_each_action_is_a_post_form_with_the_csrf_token() -> None:
    html = render.render_panels(panels(session()))
    forms = re.findall(r'<form method="post" action="([^"]+)">(.*?)</form>', html, re.S)
    assert [action for action, _ in forms] == [
        "/ui/sessions/sess-0123456789abcdef/approve",
        "/ui/sessions/sess-0123456789abcdef/deny",
    ]
    assert all('<input type="hidden" name="csrf" value="token-1">' in body for _, body in forms)


def test_session_states_in_words() -> None:
    now = 200.0
    away = session(SessionState.ACTIVE)
    assert render.session_state(away, now) == ("away", "away")
    revoked = session(SessionState.REVOKED, end_reason="revoked")
    assert render.session_state(revoked, now) == ("ended (revoked)", "ended")
    assert render.session_state(session(), now) == ("pending", "pending")


def test_a_cooling_session_shows_its_time_left() -> None:
    cooling = session(SessionState.ACTIVE, link=object(), cooling_until=200.0 + 125)
    assert render.session_state(cooling, 200.0) == ("cooling (2m 05s left)", "cooling")
    assert render.session_state(cooling, 400.0) == ("active", "active")


def test_without_usage_the_panel_says_it_is_not_recorded() -> None:
    assert "Usage is not recorded" in render.usage_section(None)
    assert "No requests in the last days" in render.usage_section([])


def test_usage_totals_per_session_and_model_and_the_estimate_note() -> None:
    rows = [
        Row("2026-12-04", "Laptop", "claude", requests=2, input_tokens=100, output_tokens=10),
        Row("2026-12-05", "Laptop", "claude", requests=3, input_tokens=1000, estimated=True),
    ]
    html = render.usage_section(rows)
    (row,) = re.findall(r"<tr><td>Laptop</td><td>claude</td>(.*?)</tr>", html, re.S)
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells == ["5", "0", "1,100", "15", "0", "0s"]
    assert "estimated" in html


def test_the_chart_stacks_each_days_tokens_by_model() -> None:
    rows = [
        Row("2026-12-04", "a", "m1", input_tokens=300, output_tokens=100),
        Row("2026-12-04", "b", "m2", input_tokens=100, output_tokens=0),
        Row("2026-12-05", "a", "m1", input_tokens=200, output_tokens=0),
    ]
    svg = usage_chart(rows)
    bars = re.findall(
        r'<rect x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"[^>]*><title>([^<]+)</title>', svg
    )
    heights = {title: float(height) for height, title in bars}
    assert set(heights) == {
        "2026-12-04 m1: 400 tokens",
        "2026-12-04 m2: 100 tokens",
        "2026-12-05 m1: 200 tokens",
    }
    assert heights["2026-12-04 m1: 400 tokens"] == 4 * heights["2026-12-04 m2: 100 tokens"]
    assert heights["2026-12-05 m1: 200 tokens"] == 2 * heights["2026-12-04 m2: 100 tokens"]
    assert "<script" not in svg and "style=" not in svg


def test_sessions_show_when_they_were_last_used() -> None:
    active = session(SessionState.ACTIVE)
    html = render.sessions_section(panels(active, last_used={active.id: time.time() - 125}))
    assert "2m 05s ago" in html or "2m 06s ago" in html


def test_traffic_remembers_each_sessions_last_request_within_bounds() -> None:
    traffic = Traffic()
    for n in range(MAX_SESSIONS_SEEN + 1):
        traffic.passed(Passed(float(n), "POST", "/v1/chat/completions", 200, 1.0, None, f"s{n}"))
    assert len(traffic.last_used) <= MAX_SESSIONS_SEEN
    assert traffic.last_used[f"s{MAX_SESSIONS_SEEN}"] == float(MAX_SESSIONS_SEEN)
    assert "s0" not in traffic.last_used
