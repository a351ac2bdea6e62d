"""The sliding-log rate limiter used by the in-memory store (pure state machine).

A sliding log keeps the times of the accepted requests inside the last window, so "never more
than ``requests`` in any interval of one window's length" holds exactly (a fixed window would
let twice the limit through at a boundary; a GCRA with a full burst lets one more through).
Memory per limited key is at most ``requests`` timestamps.
"""

from __future__ import annotations

from collections import deque

from .._models import RateLimitStatus

__all__ = ["SlidingLog"]


class SlidingLog:
    """Accepted-request times (ms) of one key, oldest first."""

    __slots__ = ("times",)

    def __init__(self) -> None:
        self.times: deque[int] = deque()

    def hit(self, now_ms: int, requests: int, window_ms: int) -> RateLimitStatus:
        """Accept one request at ``now_ms`` if fewer than ``requests`` fall in the window."""
        times = self.times
        while times and times[0] <= now_ms - window_ms:
            times.popleft()
        while len(times) > requests:  # the limit was lowered
            times.popleft()
        if len(times) >= requests:
            retry_ms = times[0] + window_ms - now_ms
            return RateLimitStatus(
                limit=requests,
                remaining=0,
                reset_seconds=(times[-1] + window_ms - now_ms) / 1000,
                allowed=False,
                retry_after_seconds=retry_ms / 1000,
            )
        times.append(now_ms)
        return RateLimitStatus(
            limit=requests,
            remaining=requests - len(times),
            reset_seconds=window_ms / 1000,
        )
