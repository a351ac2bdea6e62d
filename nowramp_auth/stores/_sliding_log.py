"""The rate limiter of the in-memory store (pure state machines), the same rules as Redis'.

Up to ``EXACT_LIMIT`` requests per window a sliding log keeps the times of the accepted
requests inside the last window, so "never more than ``requests`` in any interval of one
window's length" holds exactly (a fixed window would let twice the limit through at a
boundary; a GCRA with a full burst lets one more through). Memory: at most ``requests``
timestamps.

Above that, counts per sub-window of ``ceil(window / SUB_WINDOWS)`` ms, at most
``SUB_WINDOWS + 1`` of them. The oldest sub-window the window touches counts in full, so a
request may be refused up to one sub-window early, never accepted late.

A limit change that moves between the two folds the old state into the new one, so a
lineage keeps its budget: log to counts exactly, counts to log at the end of their
sub-window (conservative), keeping only the newest ``requests`` (the only ones that can
matter to the decision).
"""

from __future__ import annotations

import math
from collections import deque

from .._models import RateLimitStatus

__all__ = ["EXACT_LIMIT", "SUB_WINDOWS", "RateBudget", "SlidingLog", "SubWindowCounts"]

EXACT_LIMIT = 1000
"""Limits up to this many requests per window use the exact sliding log."""

SUB_WINDOWS = 100
"""Sub-windows of the bounded structure used above ``EXACT_LIMIT``."""


class SlidingLog:
    """Accepted-request times (ms) of one key, oldest first."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[int] = deque()

    def hit(
        self, now_ms: int, requests: int, window_ms: int, spend: bool = True
    ) -> RateLimitStatus:
        """Accept one request at ``now_ms`` if fewer than ``requests`` fall in the window
        (``spend=False``: only say whether it would be)."""
        times = self.times
        while times and times[0] <= now_ms - window_ms:
            times.popleft()
        count = len(times)  # may exceed a lowered limit: every time stays counted
        if count >= requests:
            # Room comes back when all but requests - 1 of the logged times have left.
            retry_ms = times[count - requests] + window_ms - now_ms
            return RateLimitStatus(
                limit=requests,
                remaining=0,
                reset_seconds=(times[-1] + window_ms - now_ms) / 1000,
                allowed=False,
                retry_after_seconds=retry_ms / 1000,
                refused_by="key",
            )
        if spend:
            times.append(now_ms)
        return RateLimitStatus(
            limit=requests,
            remaining=requests - count - 1,
            reset_seconds=window_ms / 1000,
        )


class SubWindowCounts:
    """Accepted-request counts per sub-window (index = time // width)."""

    __slots__ = ("counts", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.counts: dict[int, int] = {}

    def rebucket(self, width: int) -> None:
        """Move every count to the sub-window of ``width`` that holds its old one's end."""
        old, self.counts, old_width, self.width = self.counts, {}, self.width, width
        for index, count in old.items():
            new = ((index + 1) * old_width - 1) // width
            self.counts[new] = self.counts.get(new, 0) + count

    def hit(self, now_ms: int, requests: int, spend: bool = True) -> RateLimitStatus:
        """Accept one request if the sub-windows the window touches hold fewer than
        ``requests`` (``spend=False``: only say whether it would be)."""
        width, counts = self.width, self.counts
        current = now_ms // width
        first = current - SUB_WINDOWS
        for index in [i for i in counts if i < first]:
            del counts[index]
        total = sum(counts.values())
        if total >= requests:
            oldest, newest = min(counts), max(counts)
            return RateLimitStatus(
                limit=requests,
                remaining=0,
                reset_seconds=((newest + SUB_WINDOWS + 1) * width - now_ms) / 1000,
                allowed=False,
                retry_after_seconds=((oldest + SUB_WINDOWS + 1) * width - now_ms) / 1000,
                refused_by="key",
            )
        if spend:
            counts[current] = counts.get(current, 0) + 1
        return RateLimitStatus(
            limit=requests,
            remaining=requests - total - 1,
            reset_seconds=SUB_WINDOWS * width / 1000,
        )


class RateBudget:
    """One key lineage's budget, in whichever structure its current limit calls for."""

    __slots__ = ("state",)

    def __init__(self) -> None:
        self.state: SlidingLog | SubWindowCounts = SlidingLog()

    def hit(
        self, now_ms: int, requests: int, window_ms: int, spend: bool = True
    ) -> RateLimitStatus:
        """Accept one request at ``now_ms`` under ``requests`` per ``window_ms``, or not
        (``spend=False``: only say whether it would be; the structure may still be
        converted to the one the limit calls for, which keeps every count)."""
        state = self.state
        if requests <= EXACT_LIMIT:
            if isinstance(state, SubWindowCounts):
                state = self.state = _to_log(state, requests)
            return state.hit(now_ms, requests, window_ms, spend)
        width = math.ceil(window_ms / SUB_WINDOWS)
        if isinstance(state, SlidingLog):
            counts = SubWindowCounts(width)
            for at in state.times:
                if at > now_ms - window_ms:
                    counts.counts[at // width] = counts.counts.get(at // width, 0) + 1
            state = self.state = counts
        elif state.width != width:
            state.rebucket(width)
        return state.hit(now_ms, requests, spend)


def _to_log(counts: SubWindowCounts, requests: int) -> SlidingLog:
    log = SlidingLog()
    room = requests
    stamps: list[int] = []
    for index in sorted(counts.counts, reverse=True):
        take = min(counts.counts[index], room)
        stamps.extend([(index + 1) * counts.width - 1] * take)
        room -= take
        if not room:
            break
    log.times.extend(sorted(stamps))
    return log
