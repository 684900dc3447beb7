"""The example agent in docs/writing-an-agent.md runs as written and serves an editor."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from mcp_local_provider.core.registry import SessionState
from tests.fakes import BRIDGE_TOKEN, Daemon, until

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-an-agent.md"


def example() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## An example agent") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None
    return found.group(1)


def test_the_example_is_about_thirty_lines() -> None:
    assert 25 <= len(example().strip().splitlines()) <= 40


async def test_the_example_agent_runs_as_written(
    daemon: Daemon, openai_client: Any, tmp_path: Path
) -> None:
    script = tmp_path / "shout.py"
    script.write_text(example(), encoding="utf-8")
    env = {
        **os.environ,
        "AGENT_URL": daemon.ws_url,
        "MCP_LOCAL_PROVIDER_BRIDGE_TOKEN": BRIDGE_TOKEN,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await until(lambda: bool(daemon.state.registry.in_state(SessionState.ACTIVE)), timeout=20)
        api = openai_client(daemon)
        messages = [{"role": "user", "content": "hello quiet world"}]
        reply = await api.chat.completions.create(model="shout", messages=messages)
        assert reply.choices[0].message.content == "HELLO QUIET WORLD "
        cut = await api.chat.completions.create(model="shout", messages=messages, stop=["QUIET"])
        assert cut.choices[0].message.content == "HELLO "
        [session] = daemon.state.registry.in_state(SessionState.ACTIVE)
        await daemon.state.hub.revoke(session.id)
        out, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"Approve with: mcp-local-provider sessions approve sess-" in out
    assert out.decode().strip().endswith("Session ended: revoked")
