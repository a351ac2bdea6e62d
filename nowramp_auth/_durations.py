"""Parsing durations (``90d``, ``1h30m``) and rate limits (``100/60s``) for the CLI (pure)."""

from __future__ import annotations

import re
from datetime import timedelta

from ._models import RateLimit

__all__ = ["MAX_DURATION", "format_duration", "parse_duration", "parse_rate_limit"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
MAX_DURATION = timedelta(days=36_525)
"""The longest duration accepted (100 years): longer ones would overflow dates."""


def parse_duration(text: str) -> timedelta:
    """``"90d"``, ``"24h"``, ``"1h30m"``, ``"500ms"`` → timedelta; ``ValueError`` otherwise."""
    text = text.strip()
    pos = 0
    seconds = 0.0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"invalid duration {text!r}: use e.g. 90d, 24h, 1h30m, 45s")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {text[:40]!r} is too long: at most 100 years (36525d)")
    return timedelta(seconds=seconds)


def parse_rate_limit(text: str) -> RateLimit:
    """``"100/60s"``, ``"1000/1h"`` or, named, ``"daily=10000/1d"`` → RateLimit;
    ``ValueError`` otherwise."""
    name, named, limit = text.rpartition("=") if "=" in text else ("", "", text)
    requests, sep, window = limit.partition("/")
    if not sep or not requests.strip().isdigit() or (named and not name):
        raise ValueError(
            f"invalid rate limit {text[:60]!r}: use [NAME=]REQUESTS/WINDOW, e.g. 100/60s"
        )
    return RateLimit(int(requests), parse_duration(window), name if named else None)


def format_duration(delta: timedelta) -> str:
    """A short human form: ``1d2h``, ``45s``."""
    seconds = int(delta.total_seconds())
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])
