"""The real agent CLIs (Claude Code, Codex, Gemini CLI) installed from npm into
tests/agent_clis, and how to point each one at the mock model API (tests/model_api.py).

Each run gets its own HOME (and CODEX_HOME), so nothing of the user's own CLI setup is read and
no account is needed: the CLIs talk only to the mock, with a dummy API key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from mcp_local_provider.core.config import BackendSettings
from tests.model_api import ModelApi

FOLDER = Path(__file__).parent / "agent_clis"
BIN = FOLDER / "node_modules" / ".bin"
#: The backends with a CLI on npm (cursor-agent is not: its tests use the fake).
NAMES = ("claude", "codex", "gemini")
#: The editor CLIs installed alongside (Continue's CLI).
CLIENTS = ("cn",)
#: The model Codex is told to use (the mock accepts any name).
CODEX_MODEL = "gpt-mock"


def install() -> str | None:
    """Install the CLIs from the committed lockfile (``npm ci``) unless already installed;
    returns why they cannot be, or None when they are ready."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return "node and npm are needed to run the real agent CLIs"
    lock = FOLDER / "package-lock.json"
    installed = FOLDER / "node_modules" / ".package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=FOLDER,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            return f"npm ci failed in {FOLDER}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    missing = [name for name in (*NAMES, *CLIENTS) if not (BIN / name).exists()]
    if missing:
        return f"npm ci installed no {', '.join(missing)} in {BIN}"
    return None


def environment(name: str, api: ModelApi, home: Path, *, retries: bool = False) -> dict[str, str]:
    """The environment that points CLI ``name`` at ``api``, with ``home`` as its home folder.

    ``retries``: keep the CLI's own retries of a failing model API (off by default, so a failure
    is quick).
    """
    home.mkdir(parents=True, exist_ok=True)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    if name == "claude":
        env |= {
            "ANTHROPIC_BASE_URL": api.url,
            "ANTHROPIC_API_KEY": "mock-key",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_AUTOUPDATER": "1",
        }
        if not retries:
            env["CLAUDE_CODE_MAX_RETRIES"] = "0"
    elif name == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir(exist_ok=True)
        count = 4 if retries else 0
        (codex_home / "config.toml").write_text(
            f'model = "{CODEX_MODEL}"\n'
            'model_provider = "mock"\n'
            "[model_providers.mock]\n"
            'name = "mock model API"\n'
            f'base_url = "{api.url}/v1"\n'
            'wire_api = "responses"\n'
            'env_key = "MOCK_API_KEY"\n'
            f"request_max_retries = {count}\n"
            f"stream_max_retries = {count}\n"
        )
        env |= {"CODEX_HOME": str(codex_home), "MOCK_API_KEY": "mock-key"}
    elif name == "gemini":
        settings: dict[str, Any] = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
        if not retries:
            settings["general"] = {"maxAttempts": 1}
        (home / ".gemini").mkdir(exist_ok=True)
        (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
        env |= {"GOOGLE_GEMINI_BASE_URL": api.url, "GEMINI_API_KEY": "mock-key"}
    else:
        raise ValueError(f"no real CLI for {name!r}")
    return env


def continue_environment(home: Path) -> dict[str, str]:
    """The environment for Continue's CLI (``cn``) with ``home`` as its home folder: none of a
    user's Continue setup is read, no login, no telemetry or metrics, no self-update."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "CONTINUE_GLOBAL_DIR": str(home / ".continue"),
        "CONTINUE_CLI_ENABLE_TELEMETRY": "0",
        "CONTINUE_METRICS_ENABLED": "0",
        "CONTINUE_CLI_AUTO_UPDATED": "1",
        "PATH": os.environ.get("PATH", ""),
    }


def settings(
    name: str, api: ModelApi, home: Path, *, retries: bool = False, **fields: Any
) -> BackendSettings:
    """Backend settings that run the real CLI ``name`` against ``api``."""
    fields.setdefault("idle_timeout", 30)
    fields.setdefault("timeout", 60)
    fields.setdefault("cancel_grace", 0.5)
    env = environment(name, api, home, retries=retries) | dict(fields.pop("env", {}))
    return BackendSettings(binary=str(BIN / name), env=env, **fields)
