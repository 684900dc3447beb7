"""API keys for the editor API: kept as SHA-256 digests, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

_DIGEST = re.compile(r"^sha256:([0-9a-fA-F]{64})$")


def key_digest(entry: str) -> str:
    """The SHA-256 hex digest a key is kept as; ``sha256:<hex>`` entries are digests already."""
    entry = entry.strip()
    match = _DIGEST.match(entry)
    if match:
        return match.group(1).lower()
    return hashlib.sha256(entry.encode()).hexdigest()


def keys_from_text(text: str) -> list[str]:
    """Digests of the keys in a keys file: one per line; blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in text.splitlines())
    return [key_digest(line) for line in lines if line and not line.startswith("#")]


class ApiKeys:
    """The editor API's keys, held as digests. Empty: keys are off and nothing is checked."""

    def __init__(self, digests: Iterable[str]) -> None:
        self._digests = tuple(sorted(set(digests)))

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def match(self, presented: str) -> str | None:
        """The matching key's id (``key-`` and 8 hex digits of its digest), or None.

        Every stored digest is compared, in constant time each, whether or not one matched.
        """
        given = hashlib.sha256(presented.encode()).hexdigest()
        found: str | None = None
        for digest in self._digests:
            if hmac.compare_digest(digest, given):
                found = digest
        return None if found is None else "key-" + found[:8]
