"""Per-key usage (request count, last use), counted on the request path without a lock.

Counting runs on every accepted request, so it must cost next to nothing and never block.
Each key has a *cell*: a list to which the request path appends the request's time (one
``list.append``, atomic in CPython: no lock). Readers, and the request path once a cell holds
more than ``FOLD_AT`` times, fold a cell into the key's totals under a lock: they take the
first ``n`` items and delete exactly those, so times appended meanwhile stay for the next
fold. Nothing counted is lost, and memory stays bounded: one cell per key counted in this
process (only keys that passed authentication are counted), each at most ``FOLD_AT`` long.

Folding also counts accepted requests per hour, and refusals of a key (a request that
presented the key's secret and was refused, e.g. for a scope or its rate limit) are counted
per hour and code: the history the dashboard charts. Hours older than ``HISTORY_HOURS`` are
dropped, so each key holds at most that many buckets per series.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ["FOLD_AT", "HISTORY_HOURS", "History", "UsageBatch", "UsageLog"]

FOLD_AT = 1024
HISTORY_HOURS = 8 * 24
Totals = dict[str, tuple[int, float]]  # key id -> (count, last use in epoch seconds)
Hours = dict[str, dict[int, int]]  # key id -> {hour (epoch hours): accepted requests}
Refusals = dict[str, dict[tuple[int, str], int]]  # key id -> {(hour, code): refusals}


class History(NamedTuple):
    """A key's counts per hour (epoch hours, i.e. epoch seconds // 3600)."""

    accepted: dict[int, int]
    refused: dict[tuple[int, str], int]


class UsageBatch(NamedTuple):
    """Everything counted since the last write-behind flush."""

    totals: Totals
    hours: Hours
    refusals: Refusals

    def __bool__(self) -> bool:
        return bool(self.totals or self.hours or self.refusals)


class UsageLog:
    """Request counts and last-use times per key."""

    __slots__ = ("_cells", "_hours", "_lock", "_refusals", "_totals")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[str, list[float]] = {}
        self._totals: dict[str, list[float]] = {}
        self._hours: Hours = {}
        self._refusals: Refusals = {}

    def cell(self, key_id: str) -> list[float]:
        """The list the request path appends a request's time (epoch seconds) to; call
        :meth:`fold` when it holds more than ``FOLD_AT`` items."""
        cell = self._cells.get(key_id)
        if cell is None:
            with self._lock:
                cell = self._cells.setdefault(key_id, [])
        return cell

    def count(self, key_id: str, at: float) -> None:
        """Count one request of ``key_id`` at ``at`` (epoch seconds). No I/O."""
        cell = self._cells.get(key_id) or self.cell(key_id)
        cell.append(at)
        if len(cell) > FOLD_AT:
            self.fold(key_id, cell)

    def fold(self, key_id: str, cell: list[float]) -> None:
        """Move the times in ``cell`` into the totals of ``key_id``."""
        with self._lock:
            self._fold(key_id, cell)

    def _fold(self, key_id: str, cell: list[float]) -> None:
        n = len(cell)
        if not n:
            return
        times = cell[:n]
        last = max(times)
        del cell[:n]
        hours = self._hours.get(key_id)
        if hours is None:
            hours = self._hours[key_id] = {}
        size = len(hours)
        hour = int(last // 3600)
        if int(min(times) // 3600) == hour:  # the usual case: one hour, one addition
            hours[hour] = hours.get(hour, 0) + n
        else:
            for at in times:
                hour = int(at // 3600)
                hours[hour] = hours.get(hour, 0) + 1
        if len(hours) > size:  # a new hour: drop those past the history
            _prune(hours, int(last // 3600))
        usage = self._totals.get(key_id)
        if usage is None:
            self._totals[key_id] = [n, last]
        else:
            usage[0] += n
            if last > usage[1]:
                usage[1] = last

    def count_refusal(self, key_id: str, code: str, at: float) -> None:
        """Count one refusal of a request that presented ``key_id``'s secret."""
        hour = int(at // 3600)
        with self._lock:
            refused = self._refusals.get(key_id)
            if refused is None:
                refused = self._refusals[key_id] = {}
            bucket = (hour, code)
            count = refused.get(bucket)
            if count is None:  # a new hour or code: drop buckets past the history
                refused[bucket] = 1
                _prune(refused, hour)
            else:
                refused[bucket] = count + 1

    def history(self, key_id: str) -> History:
        """The counts per hour of ``key_id`` held here (all of them for a memory store; what
        is not flushed yet for Redis)."""
        with self._lock:
            cell = self._cells.get(key_id)
            if cell is not None:
                self._fold(key_id, cell)
            return History(dict(self._hours.get(key_id, {})), dict(self._refusals.get(key_id, {})))

    def _fold_all(self) -> None:
        for key_id, cell in list(self._cells.items()):
            self._fold(key_id, cell)

    def totals(self, key_ids: Iterable[str]) -> Totals:
        """``(count, last use)`` of the given keys that were counted."""
        with self._lock:
            result: Totals = {}
            for key_id in key_ids:
                cell = self._cells.get(key_id)
                if cell is not None:
                    self._fold(key_id, cell)
                usage = self._totals.get(key_id)
                if usage is not None:
                    result[key_id] = (int(usage[0]), usage[1])
            return result

    def take(self) -> UsageBatch:
        """Everything counted, removed (for a write-behind flush; see :meth:`give_back`)."""
        with self._lock:
            self._fold_all()
            taken, self._totals = self._totals, {}
            hours, self._hours = self._hours, {}
            refusals, self._refusals = self._refusals, {}
        totals = {key_id: (int(count), last) for key_id, (count, last) in taken.items()}
        return UsageBatch(totals, hours, refusals)

    def give_back(self, batch: UsageBatch) -> None:
        """Merge a batch back after a failed flush, so nothing is lost."""
        with self._lock:
            for key_id, (count, last) in batch.totals.items():
                usage = self._totals.setdefault(key_id, [0, last])
                usage[0] += count
                usage[1] = max(usage[1], last)
            for key_id, hours in batch.hours.items():
                mine = self._hours.setdefault(key_id, {})
                for hour, n in hours.items():
                    mine[hour] = mine.get(hour, 0) + n
            for key_id, refused in batch.refusals.items():
                held = self._refusals.setdefault(key_id, {})
                for bucket, n in refused.items():
                    held[bucket] = held.get(bucket, 0) + n

    def reset(self) -> None:
        """Forget every count (a forked child counts its own). Cells stay the same objects:
        whoever holds one keeps counting into this log."""
        self._lock = threading.Lock()
        for cell in self._cells.values():
            cell.clear()
        self._totals = {}
        self._hours = {}
        self._refusals = {}


def _prune(buckets: dict[Any, int], now_hour: int) -> None:
    # Keep the last HISTORY_HOURS hours. Called when a bucket is added (at most once per
    # hour and code), and scans only once the dict holds more buckets than hours kept.
    if len(buckets) > HISTORY_HOURS:
        oldest = now_hour - HISTORY_HOURS
        for bucket in [b for b in buckets if (b[0] if isinstance(b, tuple) else b) < oldest]:
            del buckets[bucket]
