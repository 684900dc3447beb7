"""The LiteLLM proxy arm: run from the interpreter of an environment that has ``litellm[proxy]``
(usually not the benchmark's own, whose dependencies it would change), with one worker in front
of the same mock upstream, and nothing fetched from the network at start-up."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass

#: The model name the proxy serves; ``openai/`` makes it forward to an OpenAI-compatible API.
MODEL = "openai/bench"

HOW_TO = (
    "to add it, install LiteLLM in an environment of its own "
    "(python3 -m venv /tmp/litellm-venv && /tmp/litellm-venv/bin/pip install 'litellm[proxy]') "
    "and pass --litellm /tmp/litellm-venv/bin/python"
)

#: LiteLLM reads these maps from its own package instead of downloading them, and sends no
#: telemetry. A shutdown shorter than the harness's wait before it kills a child.
OFFLINE = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_TELEMETRY_DISABLED": "True",
    "GRACEFUL_SHUTDOWN_TIMEOUT": "5",
}

#: Prints LiteLLM's version, then the proxy's own dependencies that are missing. Imports
#: nothing of LiteLLM itself, which takes seconds.
_PROBE = """
import importlib.metadata, importlib.util
print(importlib.metadata.version("litellm"))
print(",".join(n for n in ("fastapi", "uvicorn") if importlib.util.find_spec(n) is None))
"""

_START = "from litellm.proxy.proxy_cli import run_server; run_server()"


class LiteLLMMissing(Exception):
    """The interpreter cannot run LiteLLM's proxy; the message says why."""


@dataclass(frozen=True)
class LiteLLM:
    python: str
    version: str
    #: The proxy refuses to start without a master key; requests carry it.
    master_key: str

    @classmethod
    def find(cls, python: str | None) -> LiteLLM:
        """LiteLLM's proxy as ``python`` (default: this interpreter) runs it."""
        python = python or sys.executable
        try:
            probe = subprocess.run(
                [python, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise LiteLLMMissing(f"{python} cannot be run ({exc})") from None
        if probe.returncode != 0:
            raise LiteLLMMissing(f"litellm is not installed for {python}")
        version, _, missing = probe.stdout.strip().partition("\n")
        if missing.strip():
            raise LiteLLMMissing(
                f"{python} has litellm {version} without its proxy ({missing.strip()} missing: "
                "pip install 'litellm[proxy]')"
            )
        return cls(python, version, "sk-" + secrets.token_hex(32))

    def argv(self, upstream: str, port: int) -> list[str]:
        """One worker on 127.0.0.1:``port`` forwarding ``MODEL`` to ``upstream`` (a /v1 URL)."""
        return [self.python, "-c", _START, "--model", MODEL, "--api_base", upstream,
                "--host", "127.0.0.1", "--port", str(port), "--num_workers", "1"]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **OFFLINE, "LITELLM_MASTER_KEY": self.master_key}
        # The mock upstream takes any key; never hand it a real one from this shell.
        env["OPENAI_API_KEY"] = "benchmark"
        return env

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Authorization": f"Bearer {self.master_key}"}
