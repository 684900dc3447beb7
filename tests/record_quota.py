"""Records tests/fixtures/{claude,codex,gemini}/rate_limited.* from the real CLIs, with the mock
model API refusing as each vendor does when an account is out of quota (see
tests/fixtures/README.md).

    python -m tests.record_quota [claude|codex|gemini ...]

Each CLI is run by its backend as a request runs it, behind the same recording wrapper as
``tests/record_fixtures.py``; besides the stdout lines (``rate_limited.ndjson``), the error the
backend raised is kept (``rate_limited.error.json``): its message carries the CLI's stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

from mcp_local_provider.agent import BackendError
from mcp_local_provider.agent.backends import create
from tests.clis import chat, collect
from tests.model_api import ModelApi, Reply
from tests.real_clis import BIN, NAMES, install, settings
from tests.record_fixtures import FIXTURES, TEE, notifications, write

#: When the mock says the quota comes back (a fixed moment, so the recordings are stable).
RESETS_AT = 1_900_000_000
RETRY_AFTER = "1800"

#: Each vendor's refusal: the body and headers its API sends with a 429.
REFUSALS: dict[str, Reply] = {
    "claude": Reply(
        status=429,
        error={
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "This request would exceed your account's rate limit.",
            },
        },
        headers=(
            ("retry-after", RETRY_AFTER),
            ("anthropic-ratelimit-unified-status", "rejected"),
            ("anthropic-ratelimit-unified-reset", str(RESETS_AT)),
        ),
    ),
    "codex": Reply(
        status=429,
        error={
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": "plus",
                "resets_at": RESETS_AT,
            }
        },
        headers=(("retry-after", RETRY_AFTER),),
    ),
    "gemini": Reply(
        status=429,
        error={
            "error": {
                "code": 429,
                "message": "Resource has been exhausted (e.g. check quota).",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": RETRY_AFTER + "s",
                    }
                ],
            }
        },
        headers=(("retry-after", RETRY_AFTER),),
    ),
}


async def record(name: str, root: Path) -> None:
    """One request through the backend, the real CLI behind the recording wrapper, refused."""
    api = await ModelApi(REFUSALS[name]).start()
    out, wrapper = root / f"{name}.out", root / name
    wrapper.write_text(TEE.format(python=sys.executable, out=str(out), real=str(BIN / name)))
    wrapper.chmod(0o755)
    config = settings(name, api, root / f"home-{name}")
    backend = create(name, settings=config.model_copy(update={"binary": str(wrapper)}))
    failed: dict[str, str] = {}
    try:
        await collect(backend.serve(chat("Say hello.")))
    except BackendError as exc:
        failed = {"code": exc.code, "message": exc.message}
    finally:
        await backend.close()
        await api.stop()
    lines = out.read_text().splitlines() if out.exists() else []
    if name == "codex":
        lines = notifications(lines)
    write(name, "rate_limited", lines)
    (FIXTURES / name / "rate_limited.error.json").write_text(json.dumps(failed, indent=1) + "\n")
    print(f"  {name}: the backend said {failed}")


async def main(names: list[str]) -> None:
    reason = install()
    if reason:
        sys.exit(reason)
    with tempfile.TemporaryDirectory(prefix="record-quota-") as tmp:
        await asyncio.gather(*(record(name, Path(tmp)) for name in names or NAMES))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
