"""The bridge token: created once per user, kept in a 0600 file, never printed in full."""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from mcp_local_provider.core.config import Config


class TokenError(Exception):
    """The token file is missing, empty or unreadable."""


def fingerprint(token: str) -> str:
    """A short, safe way to refer to a token in logs."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def _read(path: Path) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenError(f"cannot read the bridge token file {path}: {exc.strerror}") from None
    if not token:
        raise TokenError(f"the bridge token file {path} is empty")
    return token


def load_or_create(config: Config) -> tuple[str, Path | None]:
    """The daemon's token: configured, read from the token file, or created there (0600)."""
    if config.bridge_token is not None:
        return config.bridge_token.get_secret_value(), None
    path = config.resolved_token_file()
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
        return _read(path), path
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, path


def read_existing(config: Config) -> str:
    """The token for a client (CLI or agent); never creates one."""
    if config.bridge_token is not None:
        return config.bridge_token.get_secret_value()
    path = config.resolved_token_file()
    if not path.exists():
        raise TokenError(
            f"no bridge token at {path}: start `mcp-local-provider serve` first, "
            "or pass --token-file / set MCP_LOCAL_PROVIDER_BRIDGE_TOKEN"
        )
    return _read(path)
