"""The MCP extra stays optional: the core works without the SDK, and the mcp command says how
to install it."""

from __future__ import annotations

import subprocess
import sys

WITHOUT_SDK = "import sys; sys.modules['mcp'] = None; sys.modules['mcp_types'] = None\n"


def run_without_sdk(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_SDK + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_core_and_the_mcp_servers_plain_parts_import_without_the_sdk() -> None:
    done = run_without_sdk(
        "import mcp_local_provider.cli.main, mcp_local_provider.http.app\n"
        "import mcp_local_provider.http.server, mcp_local_provider.agent\n"
        "import mcp_local_provider.mcp.session, mcp_local_provider.mcp.inbox\n"
        "import mcp_local_provider.mcp.output_limit, mcp_local_provider.mcp.render\n"
        "print('ok')"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_mcp_command_without_the_sdk_prints_how_to_install_it() -> None:
    done = run_without_sdk(
        "from mcp_local_provider.cli.main import main\nraise SystemExit(main(['mcp']))"
    )
    assert done.returncode == 1
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("mcp-local-provider: ")
    assert "pip install 'mcp-local-provider[mcp]'" in line
