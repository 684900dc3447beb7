"""Durations in words, as people read them in ``status`` and on the web page."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """``3d 4h``, ``2h 05m``, ``4m 09s`` or ``12s``."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
