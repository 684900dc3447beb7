"""Identifiers the daemon hands out for requests, completions, messages and tool calls. No I/O.

They must be unique, not secret: nothing is authorised by knowing one (session ids and tokens
come from ``secrets``). Drawn from the ``random`` module's generator, seeded by the system at
start-up, because a request needs several and asking the kernel for each costs a system call
on the path of every request.
"""

from __future__ import annotations

import random

_bits = random.getrandbits


def unique_hex(digits: int) -> str:
    """``digits`` random lowercase hex digits."""
    return f"{_bits(digits * 4):0{digits}x}"
