"""A key's usage over the last 7 days as a server-rendered SVG bar chart (no JavaScript).

Two panels share the hourly time axis: accepted requests per hour, and refusals per hour
stacked by code. Every bar carries its numbers (``data-hour``, ``data-count``, ``data-code``)
and a ``<title>`` a screen reader or a hover shows; the page also lists the totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from ..stores._usage import History

__all__ = ["HOURS", "UsageChart", "usage_chart"]

HOURS = 7 * 24
_BAR = 4  # px per hour
_PANEL = 90  # px per panel
_LEFT, _TOP, _GAP = 44, 18, 34
CODE_COLOURS = {
    "INSUFFICIENT_PERMISSIONS": "#b45309",
    "IP_NOT_ALLOWED": "#7c3aed",
    "RATE_LIMITED": "#dc2626",
    "API_KEY_EXPIRED": "#6b7280",
    "INVALID_API_KEY": "#111827",
    "INVALID_SESSION_TOKEN": "#0e7490",
    "SESSION_EXPIRED": "#9ca3af",
}


@dataclass(frozen=True, slots=True)
class UsageChart:
    """The chart's SVG and the totals shown beside it."""

    svg: str
    accepted: int
    refused: dict[str, int]


def _label(hour: int) -> str:
    return datetime.fromtimestamp(hour * 3600, UTC).strftime("%Y-%m-%d %H:00 UTC")


def usage_chart(history: History, now_hour: int) -> UsageChart:
    """The SVG of the ``HOURS`` hours up to ``now_hour`` (epoch hours)."""
    first = now_hour - HOURS + 1
    accepted = {h: n for h, n in history.accepted.items() if first <= h <= now_hour}
    refused: dict[int, dict[str, int]] = {}
    totals: dict[str, int] = {}
    for (hour, code), n in history.refused.items():
        if first <= hour <= now_hour:
            refused.setdefault(hour, {})[code] = n
            totals[code] = totals.get(code, 0) + n
    width = _LEFT + HOURS * _BAR + 8
    height = _TOP + 2 * _PANEL + _GAP + 24
    top_ok = max(accepted.values(), default=0)
    top_refused = max((sum(c.values()) for c in refused.values()), default=0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="chart-title" class="chart" width="100%">',
        '<title id="chart-title">Accepted requests and refusals per hour, last 7 days</title>',
    ]
    panels = [
        ("Accepted per hour", _TOP, top_ok),
        ("Refused per hour", _TOP + _PANEL + _GAP, top_refused),
    ]
    for name, y, top in panels:
        parts.append(
            f'<text x="{_LEFT}" y="{y - 5}" font-size="11" fill="#374151">{escape(name)} '
            f"(max {top})</text>"
        )
        parts.append(
            f'<line x1="{_LEFT}" y1="{y + _PANEL}" x2="{_LEFT + HOURS * _BAR}" '
            f'y2="{y + _PANEL}" stroke="#9ca3af" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{_LEFT - 4}" y="{y + 9}" font-size="10" text-anchor="end" '
            f'fill="#6b7280">{top}</text>'
        )
    for day in range(8):  # day boundaries, labelled with the date
        hour = first + day * 24 - (first % 24)
        if first <= hour <= now_hour:
            x = _LEFT + (hour - first) * _BAR
            parts.append(
                f'<text x="{x}" y="{height - 6}" font-size="10" fill="#6b7280">'
                f"{datetime.fromtimestamp(hour * 3600, UTC):%b %d}</text>"
            )
    ok_y = _TOP
    for hour, n in sorted(accepted.items()):
        x = _LEFT + (hour - first) * _BAR
        h = max(1, round(n / top_ok * _PANEL)) if top_ok else 0
        parts.append(
            f'<rect class="accepted" data-hour="{hour}" data-count="{n}" x="{x}" '
            f'y="{ok_y + _PANEL - h}" width="{_BAR - 1}" height="{h}" fill="#2563eb">'
            f"<title>{_label(hour)}: {n} accepted</title></rect>"
        )
    bad_y = _TOP + _PANEL + _GAP
    for hour, codes in sorted(refused.items()):
        x = _LEFT + (hour - first) * _BAR
        base = bad_y + _PANEL
        for code, n in sorted(codes.items()):
            h = max(1, round(n / top_refused * _PANEL)) if top_refused else 0
            base -= h
            colour = CODE_COLOURS.get(code, "#374151")
            parts.append(
                f'<rect class="refused" data-hour="{hour}" data-code="{escape(code)}" '
                f'data-count="{n}" x="{x}" y="{base}" width="{_BAR - 1}" height="{h}" '
                f'fill="{colour}"><title>{_label(hour)}: {n} {escape(code)}</title></rect>'
            )
    parts.append("</svg>")
    return UsageChart("".join(parts), sum(accepted.values()), totals)
