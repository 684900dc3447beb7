"""What host names, listening addresses and browser origins look like: parsing and the checks
the config applies to them. No I/O."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

#: Host names every daemon answers to (with or without the port it is bound to).
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: Browser origins allowed by default: pages served from this machine, on any port.
LOOPBACK_ORIGINS = tuple(
    f"{scheme}://{name}:*" for scheme in ("http", "https") for name in LOOPBACK_NAMES
)

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]{2,45}\]$")
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback_host(host: str) -> bool:
    """Whether listening on ``host`` keeps the daemon on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` from a Host header or authority, lower-cased; None if malformed."""
    if not value or value != value.strip() or len(value) > 300:
        return None
    value = value.lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[: end + 1], value[end + 1 :]
        if not _IPV6.match(name):
            return None
    else:
        name, colon, port_text = value.partition(":")
        rest = colon + port_text
        if not _NAME.match(name):
            return None
    if not rest:
        return name, None
    if not rest.startswith(":") or not _PORT.match(rest[1:]) or int(rest[1:]) > 65535:
        return None
    return name, int(rest[1:])


def check_host_entry(entry: str) -> str:
    """A configured extra Host name (``name`` or ``name:port``), normalised; ValueError if not."""
    if split_host(entry) is None:
        raise ValueError(
            f"{entry!r} is not a host name (name, name:port, [ipv6] or [ipv6]:port; no wildcards)"
        )
    return entry.lower()


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int | None  # None: the scheme's default port


def parse_origin(value: str) -> Origin | None:
    """A serialised origin (``scheme://host[:port]``); None for ``null`` or anything else."""
    scheme, sep, authority = value.partition("://")
    scheme = scheme.lower()
    if not sep or not re.match(r"^[a-z][a-z0-9+.-]{0,31}$", scheme) or "/" in authority:
        return None
    parsed = split_host(authority)
    if parsed is None:
        return None
    host, port = parsed
    if port is not None and _DEFAULT_PORTS.get(scheme) == port:
        port = None
    return Origin(scheme, host, port)


def check_origin_entry(entry: str) -> str:
    """A configured allowed origin; ``scheme://host``, ``scheme://host:port`` or
    ``scheme://host:*`` (any port). ``*`` and ``null`` are refused."""
    if entry.strip() in ("*", "null") or "*" in entry.replace(":*", "", 1):
        raise ValueError(f"{entry!r} is not allowed: list each trusted origin explicitly")
    if entry.endswith(":*"):
        if parse_origin(entry[:-2]) is None:
            raise ValueError(f"{entry!r} is not an origin (scheme://host[:port|:*])")
    elif parse_origin(entry) is None:
        raise ValueError(f"{entry!r} is not an origin (scheme://host[:port|:*])")
    return entry.lower()


def unreachable(url: str, exc: BaseException) -> str:
    """Why the daemon at ``url`` could not be reached, with what to do about it."""
    cause = getattr(exc, "os_error", exc)  # aiohttp wraps the socket's error
    if isinstance(cause, ConnectionRefusedError):
        return (
            f"cannot reach the daemon at {url}: nothing is listening there; start it with "
            "`mcp-local-provider serve` (or point --url at where it runs)"
        )
    return f"cannot reach the daemon at {url}: {exc or type(exc).__name__}"
