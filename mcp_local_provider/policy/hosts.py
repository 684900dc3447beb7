"""Where requests may come from: the Host allow-list and the Origin allow-list. No I/O.

Both are exact: a Host header or Origin either matches an entry or is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mcp_local_provider.core.addresses import (
    LOOPBACK_NAMES,
    Origin,
    check_origin_entry,
    parse_origin,
    split_host,
)

#: How many distinct Host headers ``HostPolicy`` keeps split.
_SPLIT_KEPT = 64


@dataclass(frozen=True)
class HostPolicy:
    """The exact Host allow-list. Names match with no port or the port the connection came in
    on; entries configured with a port match only that port (for tunnels and forwarded ports)."""

    names: frozenset[str]
    pinned: frozenset[tuple[str, int]]
    #: Host headers already split: a client sends the same one on every request, and
    #: splitting it anew cost more than the rest of the check.
    _split: dict[str, tuple[str, int | None] | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def build(cls, extra: Iterable[str], bound_host: str = "") -> HostPolicy:
        names = set(LOOPBACK_NAMES)
        pinned: set[tuple[str, int]] = set()
        host = bound_host.lower()
        if host and host not in ("0.0.0.0", "::", "*"):
            names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
        for entry in extra:
            parsed = split_host(entry)
            if parsed is None:
                raise ValueError(f"{entry!r} is not a host name")
            name, port = parsed
            if port is None:
                names.add(name)
            else:
                pinned.add((name, port))
        return cls(frozenset(names), frozenset(pinned))

    def allows(self, header: str | None, bound_port: int | None) -> bool:
        if header is None:
            return False
        try:
            parsed = self._split[header]
        except KeyError:
            parsed = split_host(header)
            if len(self._split) >= _SPLIT_KEPT:  # headers that vary: keep the latest only
                self._split.clear()
            self._split[header] = parsed
        if parsed is None:
            return False
        if parsed in self.pinned:
            return True
        name, port = parsed
        return name in self.names and (port is None or port == bound_port)


class OriginPolicy:
    """Exact origins, or a scheme and host on any port (``:*``)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._exact: set[Origin] = set()
        self._any_port: set[tuple[str, str]] = set()
        for entry in entries:
            check_origin_entry(entry)
            if entry.endswith(":*"):
                origin = parse_origin(entry[:-2])
                assert origin is not None
                self._any_port.add((origin.scheme, origin.host))
            else:
                origin = parse_origin(entry)
                assert origin is not None
                self._exact.add(origin)

    def allows(self, value: str) -> bool:
        origin = parse_origin(value)
        if origin is None:
            return False
        return origin in self._exact or (origin.scheme, origin.host) in self._any_port
