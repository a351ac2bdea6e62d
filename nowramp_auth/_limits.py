"""``RateLimit``: one limit on the requests a key may make in a window (a value)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

__all__ = ["RateLimit"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``requests`` accepted requests in any interval of length ``window``.

    A key may carry several (``rate_limit=[...]``): a request must fit every one. ``name``
    (optional) tells them apart in listings, e.g. ``"burst"`` and ``"daily"``.

    Example: ``RateLimit(100, timedelta(seconds=60))``,
    ``RateLimit(10_000, timedelta(days=1), name="daily")``.
    """

    requests: int
    window: timedelta
    name: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None and (
            not isinstance(self.name, str)
            or not 1 <= len(self.name) <= 40
            or not self.name.isprintable()
            or self.name != self.name.strip()
        ):
            raise ValueError(
                "RateLimit.name must be 1 to 40 printable characters without surrounding "
                f"spaces, got {self.name!r}"
            )
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise TypeError("RateLimit.requests must be an int")
        if self.requests < 1:
            raise ValueError(f"RateLimit.requests must be at least 1, got {self.requests}")
        if not isinstance(self.window, timedelta):
            raise TypeError("RateLimit.window must be a timedelta")
        if self.window < timedelta(milliseconds=1):
            raise ValueError("RateLimit.window must be at least 1 millisecond")

    @property
    def window_ms(self) -> int:
        """The window in whole milliseconds."""
        return int(self.window / timedelta(milliseconds=1))

    def __str__(self) -> str:
        seconds = self.window.total_seconds()
        text = f"{seconds:g}s" if seconds != int(seconds) else f"{int(seconds)}s"
        named = f" ({self.name})" if self.name else ""
        return f"{self.requests}/{text}{named}"
