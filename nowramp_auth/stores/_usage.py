"""Per-key usage (request count, last use), counted on the request path without a lock.

Counting must never block a request, and under load it runs on every accepted request, so
the request path only appends ``(key_id, time)`` to a deque (atomic in CPython, no lock).
Readers fold the pending entries into per-key totals under a lock; the request path folds
too once more than ``fold_at`` entries are pending, so memory stays bounded however long
nobody reads. Nothing counted is lost: folding takes entries one by one with ``popleft``,
which is atomic as well, so appends racing with a fold land in this fold or the next.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

__all__ = ["UsageLog"]

Totals = dict[str, list[float]]  # key id -> [count, last use (epoch seconds)]


class UsageLog:
    """Request counts and last-use times per key.

    Parameters:
        max_keys: keys kept in the totals; counts for further keys are dropped (and counted
            in :attr:`dropped`) until the totals are taken.
        fold_at: pending entries that make the request path fold them.
    """

    __slots__ = ("_append", "_fold_at", "_lock", "_max_keys", "_pending", "_totals", "dropped")

    def __init__(self, *, max_keys: int = 100_000, fold_at: int = 4096) -> None:
        self._pending: deque[tuple[str, float]] = deque()
        self._append = self._pending.append
        self._lock = threading.Lock()
        self._totals: Totals = {}
        self._max_keys = max_keys
        self._fold_at = fold_at
        self.dropped = 0
        """Counts lost because ``max_keys`` distinct keys were already pending."""

    def count(self, key_id: str, at: float) -> None:
        """Count one request of ``key_id`` at ``at`` (epoch seconds). No lock, no I/O."""
        self._append((key_id, at))
        if len(self._pending) > self._fold_at:
            self._fold()

    def _fold(self) -> None:
        pending, totals = self._pending, self._totals
        with self._lock:
            while pending:
                try:
                    key_id, at = pending.popleft()
                except IndexError:  # emptied by a concurrent fold
                    break
                usage = totals.get(key_id)
                if usage is not None:
                    usage[0] += 1
                    if at > usage[1]:
                        usage[1] = at
                elif len(totals) < self._max_keys:
                    totals[key_id] = [1, at]
                else:
                    self.dropped += 1

    def totals(self, key_ids: Iterable[str]) -> dict[str, tuple[int, float]]:
        """``(count, last use)`` of the given keys that were counted."""
        self._fold()
        with self._lock:
            return {k: (int(u[0]), u[1]) for k in key_ids if (u := self._totals.get(k)) is not None}

    def take(self) -> Totals:
        """Every total, removed (for a write-behind flush; see :meth:`give_back`)."""
        self._fold()
        with self._lock:
            taken, self._totals = self._totals, {}
        return taken

    def give_back(self, taken: Totals) -> None:
        """Merge totals back after a failed flush, so nothing is lost."""
        with self._lock:
            for key_id, (count, last) in taken.items():
                usage = self._totals.setdefault(key_id, [0, last])
                usage[0] += count
                usage[1] = max(usage[1], last)

    def reset(self) -> None:
        """Forget everything (a forked child starts with its own counts)."""
        self._lock = threading.Lock()
        self._pending.clear()
        self._totals = {}
