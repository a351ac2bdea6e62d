"""Per-key usage (request count, last use), counted on the request path without a lock.

Counting runs on every accepted request, so it must cost next to nothing and never block.
Each key has a *cell*: a list to which the request path appends the request's time (one
``list.append``, atomic in CPython: no lock). Readers, and the request path once a cell holds
more than ``FOLD_AT`` times, fold a cell into the key's totals under a lock: they take the
first ``n`` items and delete exactly those, so times appended meanwhile stay for the next
fold. Nothing counted is lost, and memory stays bounded: one cell per key counted in this
process (only keys that passed authentication are counted), each at most ``FOLD_AT`` long.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

__all__ = ["FOLD_AT", "UsageLog"]

FOLD_AT = 1024
Totals = dict[str, tuple[int, float]]  # key id -> (count, last use in epoch seconds)


class UsageLog:
    """Request counts and last-use times per key."""

    __slots__ = ("_cells", "_lock", "_totals")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cells: dict[str, list[float]] = {}
        self._totals: dict[str, list[float]] = {}

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
        last = max(cell[:n])
        del cell[:n]
        usage = self._totals.get(key_id)
        if usage is None:
            self._totals[key_id] = [n, last]
        else:
            usage[0] += n
            if last > usage[1]:
                usage[1] = last

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

    def take(self) -> Totals:
        """Every total, removed (for a write-behind flush; see :meth:`give_back`)."""
        with self._lock:
            self._fold_all()
            taken, self._totals = self._totals, {}
        return {key_id: (int(count), last) for key_id, (count, last) in taken.items()}

    def give_back(self, taken: Totals) -> None:
        """Merge totals back after a failed flush, so nothing is lost."""
        with self._lock:
            for key_id, (count, last) in taken.items():
                usage = self._totals.setdefault(key_id, [0, last])
                usage[0] += count
                usage[1] = max(usage[1], last)

    def reset(self) -> None:
        """Forget every count (a forked child counts its own). Cells stay the same objects:
        whoever holds one keeps counting into this log."""
        self._lock = threading.Lock()
        for cell in self._cells.values():
            cell.clear()
        self._totals = {}
