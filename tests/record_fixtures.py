"""Records tests/fixtures/{claude,codex,gemini} from the real CLIs (see tests/fixtures/README.md).

    python -m tests.record_fixtures [claude|codex|gemini ...]

Each CLI is run by its backend, exactly as a request runs it, against the mock model API; a
small wrapper between the backend and the CLI copies the CLI's stdout into the fixture. Some
cases are then derived from a recording (cut short, junk lines added, deltas removed); the
README says which.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from mcp_local_provider.agent import BackendError
from mcp_local_provider.agent.backends import create
from tests.clis import chat, collect
from tests.model_api import FAIL, ModelApi, Reply
from tests.real_clis import BIN, NAMES, install, settings

FIXTURES = Path(__file__).parent / "fixtures"
PIECES = ("Hello", " there!", " How", " are", " you", " today?")
HAPPY = Reply(PIECES, reasoning="Greeting the user.")
#: Retry events kept in claude/api_retry (the CLI is stopped after them).
RETRIES_KEPT = 3

TEE = """#!{python}
import subprocess, sys
with open({out!r}, "ab") as out:
    cli = subprocess.Popen([{real!r}, *sys.argv[1:]], stdout=subprocess.PIPE)
    for line in cli.stdout:  # saved first: the backend may stop the CLI once it reads a line
        out.write(line)
        out.flush()
        sys.stdout.buffer.write(line)
        sys.stdout.buffer.flush()
sys.exit(cli.wait())
"""


async def record(name: str, api: ModelApi, root: Path, case: str, **fields: Any) -> list[str]:
    """Run one request through the backend with the real CLI behind a recording wrapper; the
    CLI's stdout lines."""
    out, wrapper = root / f"{name}-{case}.out", root / f"{name}-{case}"
    wrapper.write_text(TEE.format(python=sys.executable, out=str(out), real=str(BIN / name)))
    wrapper.chmod(0o755)
    retries = fields.pop("retries", False)
    config = settings(name, api, root / f"home-{name}-{case}", retries=retries, **fields)
    backend = create(name, settings=config.model_copy(update={"binary": str(wrapper)}))
    try:
        await collect(backend.serve(chat("Say hello.")))
    except BackendError as exc:
        print(f"  {name}/{case}: {exc.message}")
    finally:
        await backend.close()
    return out.read_text().splitlines() if out.exists() else []


def notifications(lines: list[str]) -> list[str]:
    """Codex: the app-server's notifications once the thread exists (the fake answers the
    requests itself)."""
    kept, started = [], False
    for line in lines:
        message = json.loads(line)
        if "id" in message:
            started = started or "thread" in (message.get("result") or {})
            continue
        if started:
            kept.append(line)
    return kept


def is_delta(line: str) -> bool:
    event = json.loads(line)
    if event.get("type") == "stream_event":
        return (event["event"].get("delta") or {}).get("type") == "text_delta"
    if event.get("method") == "item/agentMessage/delta":
        return True
    return bool(event.get("type") == "message" and event.get("delta"))


def without_deltas(lines: list[str]) -> list[str]:
    """``lines`` without token deltas. Gemini CLI sends only deltas, so its are merged into one
    whole message (the form it uses without streaming)."""
    kept = [line for line in lines if not is_delta(line)]
    deltas = [json.loads(line) for line in lines if is_delta(line)]
    if deltas and "role" in deltas[0]:
        whole = {k: v for k, v in deltas[0].items() if k != "delta"}
        whole["content"] = "".join(d["content"] for d in deltas)
        first = next(i for i, line in enumerate(lines) if is_delta(line))
        kept.insert(first, json.dumps(whole, separators=(",", ":")))
    return kept


def cut_after_deltas(lines: list[str], count: int) -> list[str]:
    """The lines up to and including the ``count``-th text delta."""
    seen = 0
    for i, line in enumerate(lines):
        seen += is_delta(line)
        if seen == count:
            return lines[: i + 1]
    raise ValueError("too few deltas")


JUNK = {
    # Not JSON, a cut line, and a JSON value that is not an event object.
    "claude": ["Debugger attached.", '{"type":"stream_event","event":{"type":"con', "[1, 2, 3]"],
    "codex": ["WARN codex_core: something", '{"method":"item/agentMessage/del'],
    "gemini": ["Loaded cached credentials.", '{"type":"message","timesta'],
}


def with_junk(name: str, lines: list[str]) -> list[str]:
    """``lines`` with junk lines spread among them."""
    junk = JUNK[name]
    out = list(lines)
    for n, line in enumerate(junk):
        out.insert(1 + n * 3, line)
    return out


def write(name: str, case: str, lines: list[str]) -> None:
    path = FIXTURES / name / f"{case}.ndjson"
    path.write_text("".join(line + "\n" for line in lines))
    print(f"  wrote {path.relative_to(FIXTURES.parent)} ({len(lines)} lines)")


async def record_cli(name: str, root: Path) -> None:
    print(name)
    api = await ModelApi(HAPPY).start()
    try:
        happy = await record(name, api, root, "happy")
        api.default = FAIL
        failed = await record(name, api, root, "error_result")
        if name == "claude":
            retrying = await record(
                name, api, root, "api_retry", retries=True, idle_timeout=4, timeout=8
            )
    finally:
        await api.stop()
    if name == "codex":
        happy, failed = notifications(happy), notifications(failed)
    write(name, "happy", happy)
    write(name, "error_result", failed)
    write(name, "message_only", without_deltas(happy))
    write(name, "no_result", cut_after_deltas(happy, 2))
    write(name, "malformed", with_junk(name, happy))
    if name == "claude":
        events = [json.loads(line) for line in retrying]
        last = max(i for i, e in enumerate(events) if e.get("subtype") == "api_retry")
        first = min(i for i, e in enumerate(events) if e.get("subtype") == "api_retry")
        write(name, "api_retry", retrying[: min(last, first + RETRIES_KEPT - 1) + 1])


async def main(names: list[str]) -> None:
    reason = install()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory(prefix="record-fixtures-") as tmp:
        for name in names or NAMES:
            await record_cli(name, Path(tmp))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(sys.argv[1:]))
