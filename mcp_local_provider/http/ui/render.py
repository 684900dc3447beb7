"""The web page's HTML, rendered on the server so it reads without JavaScript. Pure: data in,
text out. Every value that came from outside (labels, reasons, model names, agent ids) goes
through ``esc``; nothing is ever placed in a script, a style or an event attribute."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from importlib import resources
from string import Template

from mcp_local_provider.core.registry import Session, SessionState
from mcp_local_provider.http.ui.chart import usage_chart
from mcp_local_provider.http.ui.usage import UsageRowLike
from mcp_local_provider.obs.durations import duration
from mcp_local_provider.obs.traffic import Passed

ASSETS = resources.files("mcp_local_provider.http.ui") / "static"


def esc(value: object) -> str:
    """Text made safe for HTML content and quoted attribute values."""
    return escape(str(value), quote=True)


@dataclass(frozen=True)
class Daemon:
    """The daemon, as the page's header shows it."""

    version: str
    uptime_seconds: float
    listening: Sequence[str]
    config_file: str | None
    approval: str


@dataclass(frozen=True)
class Panels:
    """What the page shows below its header."""

    sessions: Sequence[Session]
    now: float  # the registry's clock
    csrf: str
    usage: Sequence[UsageRowLike] | None  # None: usage is not recorded
    traffic: Sequence[Passed]
    notice: str | None = None
    #: When each session last finished a request (wall clock).
    last_used: Mapping[str, float] = field(default_factory=dict)
    #: The usage source failed (``usage`` is then None).
    usage_failed: bool = False


#: Read once, when the module is imported, never on a request.
_TEMPLATE = Template((ASSETS / "page.html").read_text(encoding="utf-8"))


def page(title: str, body: str) -> str:
    """The whole document around ``body`` (already HTML)."""
    return _TEMPLATE.substitute(title=esc(title), body=body)


def login_page(message: str | None = None) -> str:
    """What a browser without a valid login sees: how to get one, nothing else."""
    notice = f'<p class="notice">{esc(message)}</p>' if message else ""
    return page(
        "mcp-local-provider: log in",
        f"""<main class="login">
<h1>mcp-local-provider</h1>
{notice}
<p>This page needs a login link. In a terminal on this machine, run:</p>
<pre>mcp-local-provider ui --open</pre>
<p>It opens (or prints) a link that logs this browser in. A link works once, for a few
minutes.</p>
</main>""",
    )


def dashboard(daemon: Daemon, panels: Panels) -> str:
    return page(
        "mcp-local-provider",
        header(daemon, panels.csrf) + f'<main id="panels">{render_panels(panels)}</main>',
    )


def header(daemon: Daemon, csrf: str) -> str:
    listening = ", ".join(esc(url) for url in daemon.listening) or "(in-process)"
    config = esc(daemon.config_file) if daemon.config_file else "none (defaults and environment)"
    pairs = (
        ("version", esc(daemon.version)),
        ("up", esc(duration(daemon.uptime_seconds))),
        ("listening", listening),
        ("config file", config),
        ("approval", esc(daemon.approval)),
        ("metrics", '<a href="/metrics">/metrics</a>'),
    )
    facts = "".join(f"<div><dt>{name}</dt><dd>{value}</dd></div>" for name, value in pairs)
    return f"""<header>
<h1>mcp-local-provider</h1>
<dl class="daemon">{facts}</dl>
<form method="post" action="/ui/logout" class="logout">{_csrf_field(csrf)}
<button>Log out</button></form>
</header>"""


def render_panels(panels: Panels) -> str:
    """The part of the page the script refreshes (``GET /ui/panels``)."""
    notice = f'<p class="notice" role="status">{esc(panels.notice)}</p>' if panels.notice else ""
    return notice + "\n".join(
        (
            pending_section(panels),
            sessions_section(panels),
            usage_section(panels.usage, failed=panels.usage_failed),
            traffic_section(panels.traffic),
        )
    )


def _csrf_field(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def _action(session: Session, action: str, csrf: str, label: str) -> str:
    return (
        f'<form method="post" action="/ui/sessions/{esc(session.id)}/{action}">'
        f'{_csrf_field(csrf)}<button class="{action}" name="action" value="{action}">'
        f"{label}</button></form>"
    )


def pending_section(panels: Panels) -> str:
    pending = [s for s in panels.sessions if s.state is SessionState.PENDING]
    if not pending:
        return (
            '<section id="pending"><h2>Agents asking for access</h2>'
            '<p class="empty">None.</p></section>'
        )
    rows = "".join(
        f"""<tr data-session="{esc(s.id)}">
<td class="label">{esc(s.label) or "<em>no label</em>"}<div class="sub">{esc(s.agent_id)}</div></td>
<td>{_names(m.name for m in s.models)}</td>
<td>{_names(s.requested_scopes)}</td>
<td>{esc(duration(s.ttl_seconds))}</td>
<td class="reason">{esc(s.reason)}</td>
<td class="actions">{_action(s, "approve", panels.csrf, "Approve")}
{_action(s, "deny", panels.csrf, "Deny")}</td>
</tr>"""
        for s in pending
    )
    return f"""<section id="pending"><h2>Agents asking for access</h2>
<table><thead><tr><th>Agent</th><th>Models</th><th>Scopes</th><th>Lifetime</th><th>Reason</th><th></th></tr></thead>
<tbody>{rows}</tbody></table></section>"""


def session_state(session: Session, now: float) -> tuple[str, str]:
    """A session's state in words, and its CSS class: the one place states become words."""
    if session.state is SessionState.ACTIVE:
        if not session.connected:
            return "away", "away"
        left = session.cooling_left(now)
        if left > 0:  # its vendor refused for a rate limit or quota; routing skips it
            return f"cooling ({duration(left)} left)", "cooling"
        return "active", "active"
    if session.state.ended:
        return f"ended ({session.end_reason or session.state.value})", "ended"
    return session.state.value, session.state.value


def _warm(session: Session) -> str:
    """The agent's processes started ahead, as it reports them (agents without any: nothing)."""
    warm = session.warm
    if warm is None or not session.connected or session.state is not SessionState.ACTIVE:
        return ""
    return (
        f'<div class="sub warm">warm: {warm["ready"]} ready, {warm["starting"]} starting, '
        f"{warm['busy']} busy</div>"
    )


def sessions_section(panels: Panels) -> str:
    sessions = [s for s in panels.sessions if s.state is not SessionState.PENDING]
    if not sessions:
        return '<section id="sessions"><h2>Sessions</h2><p class="empty">None yet.</p></section>'
    today = _today(panels.usage)
    last_used = panels.last_used
    rows = []
    for s in sorted(sessions, key=lambda s: (s.state.ended, -s.created_at)):
        words, css = session_state(s, panels.now)
        used = today.get(s.label)
        tokens = f"{used[1]:,} in / {used[2]:,} out" if used else "-"
        errors = f"{used[3]:,}" if used else "-"
        expires = (
            duration(max(0.0, s.expires_at - panels.now))
            if s.expires_at is not None and s.state is SessionState.ACTIVE
            else "-"
        )
        seen = last_used.get(s.id)
        revoke = _action(s, "revoke", panels.csrf, "Revoke") if not s.state.ended else ""
        rows.append(
            f"""<tr data-session="{esc(s.id)}" class="{css}">
<td class="label">{esc(s.label) or "<em>no label</em>"}
<div class="sub">{esc(s.agent_id)} &middot; {esc(s.id)}</div></td>
<td class="state"><span class="badge {css}">{esc(words)}</span>{_warm(s)}</td>
<td>{_names(m.name for m in s.models)}</td>
<td class="num">{s.requests:,}</td>
<td class="num">{esc(tokens)}</td>
<td class="num">{esc(errors)}</td>
<td>{esc(_ago(seen)) if seen else "-"}</td>
<td>{esc(expires)}</td>
<td class="num">{s.in_flight}/{s.max_concurrency}</td>
<td class="actions">{revoke}</td>
</tr>"""
        )
    return f"""<section id="sessions"><h2>Sessions</h2>
<table><thead><tr><th>Agent</th><th>State</th><th>Models</th><th>Requests</th><th>Tokens today</th>
<th>Errors today</th><th>Last used</th><th>Expires in</th><th>In flight</th><th></th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></section>"""


def usage_section(rows: Sequence[UsageRowLike] | None, failed: bool = False) -> str:
    head = '<section id="usage"><h2>Usage</h2>'
    if failed:
        return (
            head
            + '<p class="notice">Usage could not be read; the daemon\'s log says why.</p></section>'
        )
    if rows is None:
        return head + '<p class="empty">Usage is not recorded by this daemon.</p></section>'
    if not rows:
        return head + '<p class="empty">No requests in the last days.</p></section>'
    totals: dict[tuple[str, str], list[float]] = {}
    estimated = False
    for row in rows:
        t = totals.setdefault((row.session, row.model), [0, 0, 0, 0, 0, 0.0])
        t[0] += row.requests
        t[1] += row.errors
        t[2] += row.input_tokens
        t[3] += row.output_tokens
        t[4] += row.failovers
        t[5] += row.cooling_seconds
        estimated = estimated or row.estimated
    body = "".join(
        f"""<tr><td>{esc(session)}</td><td>{esc(model)}</td><td class="num">{int(t[0]):,}</td>
<td class="num">{int(t[1]):,}</td><td class="num">{int(t[2]):,}</td>
<td class="num">{int(t[3]):,}</td>
<td class="num">{int(t[4]):,}</td><td class="num">{esc(duration(t[5]))}</td></tr>"""
        for (session, model), t in sorted(totals.items())
    )
    note = (
        '<p class="note">Some token counts are estimated: their agent did not report them.</p>'
        if estimated
        else ""
    )
    return f"""{head}
{usage_chart(rows)}
<table class="usage"><thead><tr><th>Session</th><th>Model</th><th>Requests</th><th>Errors</th>
<th>Tokens in</th><th>Tokens out</th><th>Failovers</th><th>Cooling</th></tr></thead>
<tbody>{body}</tbody></table>{note}</section>"""


def traffic_section(traffic: Sequence[Passed]) -> str:
    rows = "".join(traffic_row(p) for p in reversed(traffic))
    return f"""<section id="traffic"><h2>Live traffic</h2>
<table><thead><tr><th>Time</th><th>Route</th><th>Model</th><th>Session</th><th>Status</th>
<th>Duration</th><th>Tokens</th></tr></thead>
<tbody id="traffic-rows">{rows}</tbody></table>
<p class="note">Requests appear as they finish (with JavaScript on); what they asked and what
they were answered is never shown or kept.</p></section>"""


def traffic_row(p: Passed) -> str:
    tokens = (
        f"{p.input_tokens} / {p.output_tokens}"
        if p.input_tokens is not None and p.output_tokens is not None
        else "-"
    )
    status_class = "ok" if p.status < 400 else "error"
    return (
        f"<tr><td>{esc(_clock(p.at))}</td><td>{esc(p.method)} {esc(p.route)}</td>"
        f"<td>{esc(p.model or '-')}</td><td>{esc(p.session_label or p.session_id or '-')}</td>"
        f'<td class="{status_class}">{p.status}</td><td class="num">{p.duration_ms:.1f} ms</td>'
        f'<td class="num">{esc(tokens)}</td></tr>'
    )


def _names(names: Iterable[str]) -> str:
    return ", ".join(f"<code>{esc(n)}</code>" for n in names) or "-"


def _today(rows: Sequence[UsageRowLike] | None) -> dict[str, tuple[int, int, int, int]]:
    """Today's (requests, input tokens, output tokens, errors) per session label."""
    if not rows:
        return {}
    day = datetime.now(UTC).date().isoformat()
    out: dict[str, tuple[int, int, int, int]] = {}
    for row in rows:
        if row.day != day:
            continue
        r, i, o, e = out.get(row.session, (0, 0, 0, 0))
        out[row.session] = (r + row.requests, i + row.input_tokens, o + row.output_tokens,
                            e + row.errors)  # fmt: skip
    return out


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def _ago(at: float) -> str:
    return duration(max(0.0, time.time() - at)) + " ago"
