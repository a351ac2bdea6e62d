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

import secrets
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
    """Everything counted since the last write-behind flush. ``flush_id`` names the batch:
    a flush that failed is retried as the very same batch (same id), so a store can skip
    what a partial earlier try already wrote (nothing counted twice)."""

    totals: Totals
    hours: Hours
    refusals: Refusals
    flush_id: str = ""

    def __bool__(self) -> bool:
        return bool(self.totals or self.hours or self.refusals)


class UsageLog:
    """Request counts and last-use times per key."""

    __slots__ = ("_cells", "_hours", "_lock", "_refusals", "_retry", "_totals")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[str, list[float]] = {}
        self._totals: dict[str, list[float]] = {}
        self._hours: Hours = {}
        self._refusals: Refusals = {}
        self._retry: UsageBatch | None = None

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

    def retry_id(self) -> str | None:
        """The flush id of a failed flush's batch waiting to be retried, if any."""
        retry = self._retry
        return retry.flush_id if retry is not None else None

    def history(self, key_id: str, written: bool = False) -> History:
        """The counts per hour of ``key_id`` held here (all of them for a memory store; what
        is not flushed yet for Redis). ``written``: the store already holds this key's share
        of the batch waiting to be retried (a partial flush wrote it), so it is left out."""
        with self._lock:
            cell = self._cells.get(key_id)
            if cell is not None:
                self._fold(key_id, cell)
            accepted = dict(self._hours.get(key_id, {}))
            refused = dict(self._refusals.get(key_id, {}))
            retry = self._retry
            if retry is not None and not written:  # a failed flush's counts are still ours
                for hour, n in retry.hours.get(key_id, {}).items():
                    accepted[hour] = accepted.get(hour, 0) + n
                for bucket, n in retry.refusals.get(key_id, {}).items():
                    refused[bucket] = refused.get(bucket, 0) + n
            return History(accepted, refused)

    def _fold_all(self) -> None:
        for key_id, cell in list(self._cells.items()):
            self._fold(key_id, cell)

    def totals(self, key_ids: Iterable[str], written: frozenset[str] = frozenset()) -> Totals:
        """``(count, last use)`` of the given keys that were counted (``written``: keys whose
        share of the batch waiting to be retried the store already holds)."""
        with self._lock:
            result: Totals = {}
            for key_id in key_ids:
                cell = self._cells.get(key_id)
                if cell is not None:
                    self._fold(key_id, cell)
                usage = self._totals.get(key_id)
                if usage is not None:
                    result[key_id] = (int(usage[0]), usage[1])
                if (
                    self._retry is not None
                    and key_id in self._retry.totals
                    and key_id not in written
                ):
                    count, last = self._retry.totals[key_id]
                    held = result.get(key_id, (0, last))
                    result[key_id] = (held[0] + count, max(held[1], last))
            return result

    def take(self) -> UsageBatch:
        """Everything counted, removed, for a write-behind flush: the batch of a failed flush
        first, as it was (see :meth:`give_back`), else a new batch with a new ``flush_id``."""
        with self._lock:
            if self._retry is not None:
                retry, self._retry = self._retry, None
                return retry
            self._fold_all()
            taken, self._totals = self._totals, {}
            hours, self._hours = self._hours, {}
            refusals, self._refusals = self._refusals, {}
        totals = {key_id: (int(count), last) for key_id, (count, last) in taken.items()}
        return UsageBatch(totals, hours, refusals, secrets.token_hex(8))

    def give_back(self, batch: UsageBatch) -> None:
        """Keep the batch of a failed flush for the next one, unchanged (nothing is lost, and
        the store can recognise what it already wrote of it); it still counts in
        :meth:`totals` and :meth:`history` meanwhile."""
        with self._lock:
            self._retry = batch

    def reset(self) -> None:
        """Forget every count (a forked child counts its own). Cells stay the same objects:
        whoever holds one keeps counting into this log."""
        self._lock = threading.Lock()
        for cell in self._cells.values():
            cell.clear()
        self._totals = {}
        self._hours = {}
        self._refusals = {}
        self._retry = None


def _prune(buckets: dict[Any, int], now_hour: int) -> None:
    # Keep the last HISTORY_HOURS hours. Called when a bucket is added (at most once per
    # hour and code), and scans only once the dict holds more buckets than hours kept.
    if len(buckets) > HISTORY_HOURS:
        oldest = now_hour - HISTORY_HOURS
        for bucket in [b for b in buckets if (b[0] if isinstance(b, tuple) else b) < oldest]:
            del buckets[bucket]
