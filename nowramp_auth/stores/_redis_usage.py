"""Usage of keys in Redis, written behind: request counts, last use, and hourly history.

The request path only counts in process memory (:class:`~._usage.UsageLog`: no lock, no
I/O); a background thread writes the counts to Redis every ``usage_flush_interval``. A flush
that fails keeps its counts for the next one. Reads merge what Redis holds with what this
process has not written yet.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from .._clock import from_epoch_us
from .._keys import key_family
from ._errors import StoreUnavailable
from ._protocol import Usage
from ._redis_clients import RedisClients
from ._redis_codec import KeyNames
from ._stats import StoreStats, counts_failures
from ._usage import HISTORY_HOURS, History, UsageLog

__all__ = ["RedisUsage"]


class RedisUsage:
    """The usage methods of :class:`~nowramp_auth.RedisKeyStore` (a mixin: the store provides
    the clients, names, counts and background threads)."""

    names: KeyNames
    stats: StoreStats
    _clients: RedisClients
    _usage: UsageLog

    def _start_threads(self) -> None:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        raise NotImplementedError  # pragma: no cover - provided by the store

    def _setup_usage(self) -> None:
        # The in-process counts the request path writes (and the fast path's hooks).
        self._usage = UsageLog()
        self.count_request = self._usage.count
        """Count one request of a key at a time in epoch seconds (no lock, no I/O); a
        background thread writes the counts behind to Redis."""
        self.usage_cell = self._usage.cell
        self.fold_usage = self._usage.fold

    def record_usage(self, key_id: str, at: datetime) -> None:
        """Count one request in memory; a background thread writes counts to Redis."""
        self._start_threads()
        self.count_request(key_id, at.timestamp())

    def flush_usage(self) -> None:
        """Write buffered usage to Redis now, one atomic script per key; a flush that fails
        is retried as the same batch, and keys it already wrote are skipped (nothing lost,
        nothing counted twice)."""
        batch = self._usage.take()
        if not batch:
            return
        ttl = (HISTORY_HOURS + 24) * 3600
        try:
            for key_id in sorted({*batch.totals, *batch.hours, *batch.refusals}):
                keys: list[str] = [self.names.usage(key_id)]
                args: list[Any] = [batch.flush_id]
                count, last = batch.totals.get(key_id, (0, None))
                args += [count, str(round(last * 1_000_000)) if last else "", ttl]
                fields = [(hour, f"a:{hour}", n) for hour, n in batch.hours.get(key_id, {}).items()]
                fields += [
                    (hour, f"r:{hour}:{code}", n)
                    for (hour, code), n in batch.refusals.get(key_id, {}).items()
                ]
                for hour, field, n in fields:  # one hash per key and day
                    name = self._history_name(key_id, hour // 24)
                    if name not in keys:
                        keys.append(name)
                    args += [keys.index(name) + 1, field, n]
                self._script("FLUSH_USAGE", keys, args)
        except StoreUnavailable:
            self.stats.failed("flush_usage")
            self._usage.give_back(batch)

    def import_usage(self, key_id: str, count: int, last_used_at: datetime | None) -> None:
        """Add usage counted elsewhere (``keys import``)."""
        name = self.names.usage(key_id)

        def write(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.hincrby(name, "count", int(count))
            if last_used_at is not None:
                pipe.hset(name, "last", str(round(last_used_at.timestamp() * 1_000_000)))
            pipe.execute()

        self._clients.write(write)

    def count_refusal(self, key_id: str, code: str, at: datetime) -> None:
        """Count a refusal of a request that presented ``key_id``'s secret (written behind)."""
        self._start_threads()
        self._usage.count_refusal(key_id, code, at.timestamp())

    def _history_name(self, key_id: str, day: int) -> str:
        return f"{self.names.ns}:usage-h:{{{key_family(key_id)}}}:{key_id}:{day}"

    @counts_failures("usage_history")
    def usage_history(self, key_id: str, hours: int = 7 * 24) -> History:
        """Accepted requests and refusals by code per hour over the last ``hours`` hours
        (epoch hours), what Redis holds plus what this process has not written yet."""
        now_hour = int(time.time() // 3600)
        first = now_hour - hours + 1
        names = [self._history_name(key_id, day) for day in range(first // 24, now_hour // 24 + 1)]

        def read(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(name)
            pipe.hget(self.names.usage(key_id), "flush")
            answers: list[Any] = pipe.execute()
            return answers

        history = History({}, {})
        *days, flushed = self._clients.read(read)
        for fields in days:
            for field, value in fields.items():
                kind, _, rest = field.partition(":")
                if kind == "a":
                    history.accepted[int(rest)] = int(value)
                elif kind == "r":
                    hour_text, _, code = rest.partition(":")
                    history.refused[(int(hour_text), code)] = int(value)
        retry = self._usage.retry_id()
        pending = self._usage.history(key_id, written=retry is not None and flushed == retry)
        for hour, n in pending.accepted.items():
            history.accepted[hour] = history.accepted.get(hour, 0) + n
        for bucket, n in pending.refused.items():
            history.refused[bucket] = history.refused.get(bucket, 0) + n
        return History(
            {h: n for h, n in history.accepted.items() if h >= first},
            {b: n for b, n in history.refused.items() if b[0] >= first},
        )

    @counts_failures("get_usage")
    def get_usage(self, key_ids: Iterable[str]) -> dict[str, Usage]:
        """Usage of the given keys: Redis' counts plus this process' unflushed ones."""
        ids = list(key_ids)
        if not ids:
            return {}

        def load(client: Any) -> list[list[str | None]]:
            pipe = client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hmget(self.names.usage(key_id), "count", "last", "flush")
            rows: list[list[str | None]] = pipe.execute()
            return rows

        rows = self._clients.read(load)
        retry = self._usage.retry_id()
        written = frozenset(k for k, row in zip(ids, rows, strict=True) if row[2] == retry)
        pending = self._usage.totals(ids, written)
        result: dict[str, Usage] = {}
        for key_id, (count, last, _) in zip(ids, rows, strict=True):
            total = int(count or 0)
            last_us = int(last) if last else None
            if key_id in pending:
                total += pending[key_id][0]
                last_us = max(last_us or 0, round(pending[key_id][1] * 1_000_000))
            if total or last_us:
                result[key_id] = (total, from_epoch_us(last_us) if last_us else None)
        return result
