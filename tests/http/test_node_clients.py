"""The Node clients Void pins (openai-node 4.x, ollama-js 0.5.x), run by tests/node/clients.mjs
against a real daemon. Skipped when node or npm is missing; installs from the committed
lockfile with ``npm ci`` the first time (or when the lockfile changed)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from mcp_local_provider.agent.backends.echo import SUFFIX_MARKER, embedding
from tests.backends import tool_calling
from tests.fakes import Daemon

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="module")
def node_clients() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the Node client tests")
    lock = NODE_DIR / "package-lock.json"
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return Path(node)


def test_the_lockfile_names_no_registry_host() -> None:
    lock = (NODE_DIR / "package-lock.json").read_text()
    assert '"resolved"' not in lock
    assert "omit-lockfile-registry-resolved=true" in (NODE_DIR / ".npmrc").read_text()


async def test_void_and_continue_calls_through_node_clients(
    daemon: Daemon, node_clients: Path
) -> None:
    await daemon.start_agent(scopes=("inference", "embeddings"))
    await daemon.start_agent(tool_calling(), agent_id="tool-agent")
    process = await asyncio.create_subprocess_exec(
        str(node_clients),
        "clients.mjs",
        daemon.url,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    out = json.loads(stdout)

    assert sorted(out["tags"]) == ["echo:latest", "tooly:latest"]
    assert out["show"] == {
        "capabilities": ["completion", "embedding", "insert"],
        "suffixTemplate": True,
    }
    assert out["ollamaChat"] == {
        "text": "hello from node",
        "doneLast": True,
        "model": "echo:latest",
    }
    assert out["ollamaChatWhole"] == "no stream"
    assert out["ollamaGenerate"] == "const x = " + SUFFIX_MARKER + ";\n"
    assert out["ollamaEmbed"] == pytest.approx(embedding("alpha"))
    assert out["ollamaToolArguments"] == {"city": "Tokyo"}
    assert out["openaiChat"] == "hi from openai-node"
    assert out["openaiTool"] == {
        "name": "get_weather",
        "id": "call_w1",
        "args": '{"city": "Tokyo"}',
        "finish": "tool_calls",
    }
    assert out["openaiCompletion"]["text"] == "def f():" + SUFFIX_MARKER + "  pass"
    assert out["openaiCompletion"]["usage"]["completion_tokens"] == 3
    # openai-node asks for base64 and decodes little-endian float32.
    assert sorted(out["openaiModels"]) == ["echo", "tooly"]
    assert out["openaiEmbedding"] == pytest.approx(embedding("alpha"), abs=1e-6)
