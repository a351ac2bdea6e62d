"""``RedisKeyStore``: keys in Redis or Redis Cluster, for many app instances sharing one truth.

Security model
--------------
* Redis holds digests (SHA-256, or HMAC-SHA256 with ``pepper``), never a plaintext key; key
  names hold public ids only. Plaintext never travels to Redis, so it cannot show up in
  ``SLOWLOG`` or ``MONITOR``.
* Fail closed: when Redis cannot be reached within the timeouts, lookups raise
  :class:`~nowramp_auth.stores.StoreUnavailable` and the request gets ``AUTH_UNAVAILABLE``
  (503), never a success and never "unknown key". The one exception is a fresh cached answer:
  a record read from Redis less than ``cache_ttl`` seconds ago still serves (so a Redis blip
  does not take hot keys down); revocations reach every instance through pub/sub within
  milliseconds, and within ``cache_ttl`` in any case.
* Invalidation: every mutation publishes the record id on ``<namespace>:invalidate`` in the
  same Lua step that changes it. Each instance's listener drops the entry; pub/sub is
  at-most-once, so the cache is flushed at every (re)subscription and nothing is cached while
  the subscription is down.
* Rate limits use Redis' own clock (one time line for every instance); usage counters are
  written behind, at most once per ``usage_flush_interval`` per process.

Sync callers (WSGI, CLI) use ``redis.Redis`` / ``redis.cluster.RedisCluster``; async callers
(ASGI) use ``redis.asyncio`` clients, one per event loop, created lazily. The event loop never
blocks on network I/O. Load is not failure: bursts wait for a connection (``queue_timeout``)
instead of failing, and rate-limit calls in flight together share one pipeline
(``_redis_clients``, ``_redis_pipeline``).

The store class is the list of store operations; its parts live beside it: clients and gates
(``_redis_clients``), auto-pipelining (``_redis_pipeline``), Lua (``_redis_scripts``), the
local cache (``_redis_cache``), the invalidation listener (``_redis_invalidation``), usage
counting (``_usage``), the record encoding (``_redis_codec``).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlparse

from redis.exceptions import NoScriptError

from .._clock import from_epoch_us
from .._keys import key_family, make_hasher
from .._models import (
    KeyRecord,
    RateLimit,
    RateLimitStatus,
    SessionRecord,
    StoredKey,
    accepted_status,
)
from ._errors import StoreUnavailable
from ._protocol import (
    NOT_CACHED,
    UPDATABLE_FIELDS,
    Usage,
    grace_cap_refused,
    rotation_refused,
)
from ._redis_cache import LocalCache
from ._redis_clients import DEFAULT_MAX_CONNECTIONS, DEFAULT_QUEUE_TIMEOUT, RedisClients
from ._redis_codec import (
    KeyNames,
    decode_key,
    decode_session,
    encode_changes,
    encode_key,
    encode_session,
    from_us,
    to_us,
)
from ._redis_dashboard import RedisDashboardState
from ._redis_invalidation import InvalidationListener
from ._redis_pipeline import Merging, ScriptPipeline
from ._sliding_log import EXACT_LIMIT, SUB_WINDOWS
from ._stats import StoreCounts, StoreStats, counts_failures
from ._usage import HISTORY_HOURS, History, UsageLog

__all__ = ["RedisKeyStore"]

_log = logging.getLogger("nowramp_auth.redis")

DEFAULT_CACHE_TTL = 10.0
DEFAULT_CACHE_SIZE = 10_000
DEFAULT_SOCKET_TIMEOUT = 0.5
DEFAULT_CONNECT_TIMEOUT = 0.25
DEFAULT_USAGE_FLUSH_INTERVAL = 1.0
# The store operation each script pipeline serves (its failures count under that name).
_OPERATIONS = {"RATE_LIMIT": "hit_rate_limit", "INSERT_SESSION": "insert_session"}


def _pairs(fields: Mapping[str, str]) -> list[str]:
    return [item for pair in fields.items() for item in pair]


def _as_dict(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _evalsha(client: Any, *, sha: str, keys: list[str], args: list[Any]) -> Any:
    return client.evalsha(sha, len(keys), *keys, *args)


_RateCall = tuple[list[str], tuple[int, int, int], str]
"""A rate-limit script call's keys, its limit's arguments and its merge group."""


def _rate_statuses(reply: list[Any], charged: int, args: Sequence[Any]) -> list[RateLimitStatus]:
    # The RATE_LIMIT script's one reply for `charged` requests of one key, as one status per
    # request in the order they were made: the first `accepted` in, the rest refused.
    accepted, remaining, retry_ms, reset_ms = (int(x) for x in reply)
    requests, window_ms = int(args[0]), int(args[1])
    reset = window_ms / 1000
    last = remaining + accepted - 1
    statuses = [accepted_status(requests, last - index, reset) for index in range(accepted)]
    if accepted < charged:
        refused = RateLimitStatus(requests, 0, reset_ms / 1000, False, retry_ms / 1000)
        statuses += [refused] * (charged - accepted)
    return statuses


class RedisKeyStore(RedisDashboardState):
    """Key store on Redis (single node) or Redis Cluster; serves sync and async callers.

    Parameters:
        url: ``redis://host:port/db`` (``rediss://`` for TLS); for a cluster, any node.
        cluster: use the Redis Cluster protocol.
        pepper: server-side secret; digests become HMAC-SHA256 keyed with it. Every instance
            (and the CLI) must use the same pepper.
        namespace: prefix of every Redis key (default ``"nowramp"``).
        cache_size: records kept in the local cache (default 10,000, plus as many negative
            answers).
        cache_ttl: seconds a cached answer may serve, 0 to 30 (default 10; 0 disables the
            cache).
        socket_timeout: seconds to wait for a Redis reply once a command is sent (default 0.5).
        connect_timeout: seconds to wait for a connection to be made (default 0.25).
        max_connections: connections per client (per node on a cluster; default 50). More
            concurrent calls than that wait for one instead of failing.
        queue_timeout: seconds a call may wait for a free connection (default 5); only then
            is the store reported unavailable.
        usage_flush_interval: seconds between usage write-backs (default 1).
        invalidation: listen for other instances' mutations (default ``True``).
    """

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        pepper: bytes | str | None = None,
        namespace: str = "nowramp",
        cache_size: int = DEFAULT_CACHE_SIZE,
        cache_ttl: float = DEFAULT_CACHE_TTL,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
        usage_flush_interval: float = DEFAULT_USAGE_FLUSH_INTERVAL,
        invalidation: bool = True,
    ) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("url must start with redis://, rediss:// or unix://")
        for name, value in (
            ("socket_timeout", socket_timeout),
            ("connect_timeout", connect_timeout),
            ("usage_flush_interval", usage_flush_interval),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        self._url = url
        self._cluster = cluster
        self._pepper = pepper.encode() if isinstance(pepper, str) else pepper
        self.hasher = make_hasher(self._pepper)
        """The hash of the bytes of a presented key; its ``hexdigest()`` is :meth:`digest`."""
        self.names = KeyNames(namespace)
        self.keys_cache: LocalCache[StoredKey] = LocalCache(cache_size, cache_ttl)
        self.current_key = self.keys_cache.current
        """The cached record of a key id while it is fresh, without I/O (the fast path's
        version check); ``None`` when the cache cannot vouch for one."""
        self.sessions_cache: LocalCache[SessionRecord] = LocalCache(cache_size, cache_ttl)
        self._clients = RedisClients(
            url,
            cluster=cluster,
            options={
                "decode_responses": True,
                "socket_timeout": socket_timeout,
                "socket_connect_timeout": connect_timeout,
            },
            max_connections=max_connections,
            queue_timeout=queue_timeout,
        )
        self.stats = StoreStats()
        """Failures, script calls and invalidation traffic, for :meth:`store_counts`."""
        self._member_prefix = secrets.token_hex(6) + ":"
        self._members = itertools.count()
        self._rate_calls: dict[str, tuple[RateLimit, _RateCall]] = {}
        self._flush_interval = usage_flush_interval
        self._invalidation = invalidation
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.subscribed = threading.Event()
        """Set while the invalidation listener is subscribed (tests wait on it)."""
        self._listener = self._new_listener()
        self._flusher: threading.Thread | None = None
        self._usage = UsageLog()
        self.count_request = self._usage.count
        """Count one request of a key at a time in epoch seconds (no lock, no I/O); a
        background thread writes the counts behind to Redis."""
        self.usage_cell = self._usage.cell
        self.fold_usage = self._usage.fold
        if invalidation:
            self.keys_cache.accepting = self.sessions_cache.accepting = False
        atexit.register(_close_at_exit, weakref.ref(self))
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _reset_after_fork(ref))

    def _new_listener(self) -> InvalidationListener:
        return InvalidationListener(
            self._clients,
            self.names.channel,
            closing=self._closing,
            on_subscribed=self._set_subscribed,
            on_invalidate=self._invalidate,
        )

    def _after_fork(self) -> None:
        # Threads and sockets do not survive fork (e.g. gunicorn --preload): start fresh.
        self._lock = threading.Lock()
        self.stats = StoreStats()  # the child counts its own work
        self._member_prefix = secrets.token_hex(6) + ":"  # the child is another process
        self._clients.after_fork()
        self._usage.reset()
        self._listener = self._new_listener()
        self._flusher = None
        self.subscribed = threading.Event()
        self.keys_cache.reset_after_fork()
        self.sessions_cache.reset_after_fork()
        self._set_subscribed(False)
        if not self._invalidation:
            self.keys_cache.accepting = self.sessions_cache.accepting = True

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> RedisKeyStore:
        """A store for ``url``; ``cluster=True`` for Redis Cluster. Options as for the class."""
        return cls(url, cluster=cluster, **options)

    def __repr__(self) -> str:
        parsed = urlparse(self._url)
        where = f"{parsed.scheme}://{parsed.hostname}:{parsed.port or 6379}"  # no password
        return f"RedisKeyStore({where!r}, cluster={self._cluster}, namespace={self.names.ns!r})"

    def digest(self, token: str) -> str:
        """Digest of a plaintext key or token."""
        return self.hasher(token.encode("ascii")).hexdigest()

    def _client(self) -> Any:
        """The sync redis-py client (tests and tools)."""
        return self._clients.client()

    # -- scripts ------------------------------------------------------------------------------
    def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script once (state-changing: never retried, except after NOSCRIPT,
        which means it did not run)."""
        for attempt in (1, 2):
            sha = self._clients.sha(name) if attempt == 1 else self._clients.load_script(name)
            try:
                return self._clients.write(
                    functools.partial(_evalsha, sha=sha, keys=keys, args=args)
                )
            except StoreUnavailable as exc:
                if attempt == 1 and isinstance(exc.__cause__, NoScriptError):
                    continue
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _script_async(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script once from the running event loop, in a shared pipeline."""
        return await self._pipeline(name).call(keys, args)

    def _pipeline(self, name: str) -> ScriptPipeline:
        # The running event loop's pipeline of one script (the rate limit's merges the calls
        # of one lineage sent in one flush: see _redis_pipeline).
        state = self._clients.loop_state()
        pipeline: ScriptPipeline | None = state.batchers.get(name)
        if pipeline is None:
            merging = Merging(self._rate_argv, _rate_statuses) if name == "RATE_LIMIT" else None
            operation = _OPERATIONS[name]
            pipeline = state.batchers[name] = ScriptPipeline(
                self._clients, state, name, merging, self.stats, operation
            )
        return pipeline

    # -- request path -------------------------------------------------------------------------
    def peek(self, operation: str, args: tuple[Any, ...]) -> Any:
        """A cached answer for a request-path operation without any I/O, or ``NOT_CACHED``.

        Lets async callers skip the coroutine machinery on cache hits."""
        if operation == "get_key":
            self._start_threads()
            return self.keys_cache.peek(args[0], NOT_CACHED)
        if operation == "get_session":
            self._start_threads()
            return self.sessions_cache.peek(args[0], NOT_CACHED)
        return NOT_CACHED

    @counts_failures("get_key")
    def get_key(self, key_id: str) -> StoredKey | None:
        """The stored key (cached), or ``None``. ``StoreUnavailable`` when Redis is down."""
        self._start_threads()
        return self.keys_cache.get(key_id, lambda: self._load_key(key_id))

    def _load_key(self, key_id: str) -> StoredKey | None:
        name = self.names.record(key_id)
        return decode_key(self._clients.read(lambda client: client.hgetall(name)))

    @counts_failures("get_key")
    async def get_key_async(self, key_id: str) -> StoredKey | None:
        """Async twin of :meth:`get_key`."""
        self._start_threads()
        return await self.keys_cache.get_async(key_id, lambda: self._load_key_async(key_id))

    async def _load_key_async(self, key_id: str) -> StoredKey | None:
        name = self.names.record(key_id)
        return decode_key(await self._clients.read_async(lambda client: client.hgetall(name)))

    @counts_failures("get_session")
    def get_session(self, session_id: str) -> SessionRecord | None:
        """The session (cached), or ``None``."""
        self._start_threads()
        return self.sessions_cache.get(session_id, lambda: self._load_session(session_id))

    def _load_session(self, session_id: str) -> SessionRecord | None:
        name = self.names.session(session_id)
        return decode_session(self._clients.read(lambda client: client.hgetall(name)))

    @counts_failures("get_session")
    async def get_session_async(self, session_id: str) -> SessionRecord | None:
        """Async twin of :meth:`get_session`."""
        self._start_threads()
        return await self.sessions_cache.get_async(
            session_id, lambda: self._load_session_async(session_id)
        )

    async def _load_session_async(self, session_id: str) -> SessionRecord | None:
        name = self.names.session(session_id)
        return decode_session(await self._clients.read_async(lambda client: client.hgetall(name)))

    def _session_args(self, session: SessionRecord) -> list[str]:
        # The Redis TTL is the session's lifetime (plus a second of slack); expiry itself is
        # decided from the stored timestamp, on the injected clock.
        lifetime_ms = (session.expires_at - session.created_at) // timedelta(milliseconds=1)
        return [str(max(1, lifetime_ms) + 1000), *_pairs(encode_session(session))]

    @counts_failures("insert_session")
    def insert_session(self, session: SessionRecord) -> None:
        """Add a widget session; Redis drops it after its lifetime."""
        keys = [self.names.session(session.id)]
        result = self._script("INSERT_SESSION", keys, self._session_args(session))
        if result != "ok":
            raise ValueError(f"session id {session.id} already exists")

    async def insert_session_async(self, session: SessionRecord) -> None:
        """Async twin of :meth:`insert_session`."""
        keys = [self.names.session(session.id)]
        result = await self._script_async("INSERT_SESSION", keys, self._session_args(session))
        if result != "ok":
            raise ValueError(f"session id {session.id} already exists")

    def _rate_call(self, lineage: str, limit: RateLimit) -> _RateCall:
        # Key names, the limit's arguments and the merge group, built once per (lineage,
        # limit): this runs per request, so the lookup is by the lineage (a str: its hash is
        # cached) and the limit is compared by identity (a record version's limit is one
        # object), not hashed. The unique member is drawn per script call (_rate_argv).
        entry = self._rate_calls.get(lineage)
        if entry is not None and (entry[0] is limit or entry[0] == limit):
            return entry[1]
        keys = [self.names.rate_log(lineage), self.names.rate_counts(lineage)]
        sub_windows = 0 if limit.requests <= EXACT_LIMIT else SUB_WINDOWS
        # Calls merge only with calls of the same lineage under the same limit.
        group = f"{lineage}\x00{limit.requests}\x00{limit.window_ms}"
        call = (keys, (limit.requests, limit.window_ms, sub_windows), group)
        if len(self._rate_calls) >= 10_000:
            self._rate_calls.clear()
        self._rate_calls[lineage] = (limit, call)
        return call

    def _rate_argv(self, limit: Sequence[Any], requests: int) -> list[Any]:
        # RATE_LIMIT's ARGV for one call charging `requests` requests; the member prefix is
        # unique in every process (and per call), so every logged request is its own member.
        member = f"{self._member_prefix}{next(self._members)}"
        return [limit[0], limit[1], member, limit[2], requests]

    @counts_failures("hit_rate_limit")
    def hit_rate_limit(self, lineage: str, limit: RateLimit, now: datetime) -> RateLimitStatus:
        """One atomic step of the lineage's budget on Redis' clock (``now`` is not used)."""
        keys, args, _ = self._rate_call(lineage, limit)
        self.stats.sent("hit_rate_limit")
        reply = self._script("RATE_LIMIT", keys, self._rate_argv(args, 1))
        return _rate_statuses(reply, 1, args)[0]

    def hit_rate_limit_async(
        self, lineage: str, limit: RateLimit, now: datetime
    ) -> Awaitable[RateLimitStatus]:
        """Async twin of :meth:`hit_rate_limit`: the future of the status. The calls of one
        lineage sent in one flush of the event loop's pipeline are charged in one script
        call, and calls of different lineages share the pipeline (see ``_redis_pipeline``).
        A plain method returning the future: no coroutine of its own per request."""
        keys, args, group = self._rate_call(lineage, limit)
        return self._pipeline("RATE_LIMIT").submit(keys, args, group)

    def rate_charger(
        self, lineage: str, limit: RateLimit
    ) -> Callable[[float], Awaitable[RateLimitStatus]]:
        """The lineage's async limiter call under ``limit``, built once per record version (the
        authenticator keeps it with the verified key): per request, only the pipeline's
        ``submit``. ``now`` is not used (Redis' clock is)."""
        keys, args, group = self._rate_call(lineage, limit)

        def charge(now: float) -> Awaitable[RateLimitStatus]:
            return self._pipeline("RATE_LIMIT").submit(keys, args, group)

        return charge

    # -- management ---------------------------------------------------------------------------
    def _index(self, key_id: str, project_id: str | None) -> None:
        # Indexes first: a stale index entry is harmless (records are the truth), a missing
        # one would hide a key from listings.
        def add(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.sadd(self.names.all_keys, key_id)
            if project_id is not None:
                pipe.sadd(self.names.project(project_id), key_id)
            pipe.execute()

        self._clients.write(add)

    @counts_failures("insert_key")
    def insert_key(self, stored: StoredKey) -> None:
        """Add a new key; ``ValueError`` when the id exists."""
        record = stored.record
        self._index(record.id, record.project_id)
        result = self._script(
            "INSERT",
            [self.names.record(record.id)],
            [self.names.channel, record.id, *_pairs(encode_key(stored))],
        )
        self.keys_cache.invalidate(record.id)
        if result != "ok":
            raise ValueError(f"key id {record.id} already exists")

    def _record_result(self, key_id: str, result: Any) -> KeyRecord:
        self.keys_cache.invalidate(key_id)
        if result == "missing":
            raise KeyError(key_id)
        stored = decode_key(_as_dict(result))
        if stored is None:  # pragma: no cover - the script returned the hash it just wrote
            raise KeyError(key_id)
        return stored.record

    @counts_failures("update_key")
    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> KeyRecord:
        """Set fields of a key in one atomic step; ``KeyError`` when unknown. A new rate
        limit applies to the lineage's existing budget (nothing is reset)."""
        unknown = set(changes) - UPDATABLE_FIELDS
        if unknown:
            raise ValueError(f"fields cannot be updated: {', '.join(sorted(unknown))}")
        to_set, to_delete = encode_changes(dict(changes))
        args = [self.names.channel, key_id, len(to_set), *_pairs(to_set), *to_delete]
        result = self._script("UPDATE", [self.names.record(key_id)], args)
        if isinstance(result, str) and result.startswith("capped:"):
            raise grace_cap_refused(key_id, from_us(result.removeprefix("capped:")))
        return self._record_result(key_id, result)

    @counts_failures("revoke_key")
    def revoke_key(self, key_id: str, at: datetime) -> KeyRecord:
        """Revoke a key in one atomic step (the first revocation time stays)."""
        result = self._script(
            "REVOKE", [self.names.record(key_id)], [self.names.channel, key_id, to_us(at)]
        )
        return self._record_result(key_id, result)

    @counts_failures("rotate_key")
    def rotate_key(
        self,
        old_id: str,
        *,
        new_id: str,
        new_digest: str,
        new_hint: str,
        now: datetime,
        grace_end: datetime,
    ) -> tuple[KeyRecord, KeyRecord]:
        """Create the successor and shorten the old key's life in one atomic Lua step."""
        old = self._load_key(old_id)
        if old is None:
            raise KeyError(old_id)
        self._index(new_id, old.record.project_id)
        args = [
            self.names.channel,
            old_id,
            new_id,
            new_digest,
            new_hint,
            to_us(now),
            to_us(grace_end),
        ]
        result = self._script(
            "ROTATE", [self.names.record(old_id), self.names.record(new_id)], args
        )
        self.keys_cache.invalidate(old_id)
        if result == "missing":
            raise KeyError(old_id)
        if result == "exists":
            raise ValueError(f"key id {new_id} already exists")
        if isinstance(result, str):  # 'revoked', 'expired' or 'rotated:<successor id>'
            reason, _, successor = result.partition(":")
            raise rotation_refused(old_id, reason, successor or None)
        old_stored, new_stored = decode_key(_as_dict(result[0])), decode_key(_as_dict(result[1]))
        if old_stored is None or new_stored is None:  # pragma: no cover - written just now
            raise KeyError(old_id)
        return old_stored.record, new_stored.record

    @counts_failures("list_keys")
    def list_keys(self, project_id: str | None = None) -> list[KeyRecord]:
        """Every key (of one project when given), oldest first."""
        index = self.names.all_keys if project_id is None else self.names.project(project_id)

        def load(client: Any) -> list[dict[str, str]]:
            ids = sorted(client.smembers(index))
            if not ids:
                return []
            pipe = client.pipeline(transaction=False)
            for key_id in ids:
                pipe.hgetall(self.names.record(key_id))
            rows: list[dict[str, str]] = pipe.execute()
            return rows

        rows = self._clients.read(load)
        records = [s.record for row in rows if (s := decode_key(row)) is not None]
        if project_id is not None:
            records = [r for r in records if r.project_id == project_id]
        return sorted(records, key=lambda r: (r.created_at, r.id))

    @counts_failures("revoke_session")
    def revoke_session(self, session_id: str, at: datetime) -> SessionRecord | None:
        """Revoke a session in one atomic step; ``None`` when unknown."""
        result = self._script(
            "REVOKE",
            [self.names.session(session_id)],
            [self.names.channel, session_id, to_us(at)],
        )
        self.sessions_cache.invalidate(session_id)
        if result == "missing":
            return None
        return decode_session(_as_dict(result))

    # -- usage (write behind) -------------------------------------------------------------------
    def record_usage(self, key_id: str, at: datetime) -> None:
        """Count one request in memory; a background thread writes counts to Redis."""
        self._start_threads()
        self.count_request(key_id, at.timestamp())

    def flush_usage(self) -> None:
        """Write buffered usage to Redis now (kept for a later try when Redis is down)."""
        batch = self._usage.take()
        if not batch:
            return

        def write(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for key_id, (count, last) in batch.totals.items():
                name = self.names.usage(key_id)
                pipe.hincrby(name, "count", int(count))
                pipe.hset(name, "last", str(round(last * 1_000_000)))
            # History: one hash per key and day, kept HISTORY_HOURS plus a day.
            days: set[str] = set()
            for key_id, hours in batch.hours.items():
                for hour, n in hours.items():
                    name = self._history_name(key_id, hour // 24)
                    pipe.hincrby(name, f"a:{hour}", n)
                    days.add(name)
            for key_id, refused in batch.refusals.items():
                for (hour, code), n in refused.items():
                    name = self._history_name(key_id, hour // 24)
                    pipe.hincrby(name, f"r:{hour}:{code}", n)
                    days.add(name)
            for name in days:
                pipe.expire(name, (HISTORY_HOURS + 24) * 3600)
            pipe.execute()

        try:
            self._clients.write(write)
        except StoreUnavailable:
            self.stats.failed("flush_usage")
            self._usage.give_back(batch)

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

        def read(client: Any) -> list[dict[str, str]]:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(name)
            answers: list[dict[str, str]] = pipe.execute()
            return answers

        history = History({}, {})
        for fields in self._clients.read(read):
            for field, value in fields.items():
                kind, _, rest = field.partition(":")
                if kind == "a":
                    history.accepted[int(rest)] = int(value)
                elif kind == "r":
                    hour_text, _, code = rest.partition(":")
                    history.refused[(int(hour_text), code)] = int(value)
        pending = self._usage.history(key_id)
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
                pipe.hmget(self.names.usage(key_id), "count", "last")
            rows: list[list[str | None]] = pipe.execute()
            return rows

        rows = self._clients.read(load)
        pending = self._usage.totals(ids)
        result: dict[str, Usage] = {}
        for key_id, (count, last) in zip(ids, rows, strict=True):
            total = int(count or 0)
            last_us = int(last) if last else None
            if key_id in pending:
                total += pending[key_id][0]
                last_us = max(last_us or 0, round(pending[key_id][1] * 1_000_000))
            if total or last_us:
                result[key_id] = (total, from_epoch_us(last_us) if last_us else None)
        return result

    def _flush_loop(self) -> None:
        while not self._closing.wait(self._flush_interval):
            try:
                self.flush_usage()
            except Exception:  # pragma: no cover - never let the thread die
                _log.exception("usage flush failed")

    # -- background threads and invalidation ----------------------------------------------------
    def _start_threads(self) -> None:
        # The invalidation listener and the usage write-behind, started by the first
        # request-path call (not at construction, so a forked child starts its own).
        if self._flusher is not None and (
            self._listener.thread is not None or not self._invalidation
        ):
            return
        with self._lock:
            if self._closing.is_set():
                return
            if self._listener.thread is None and self._invalidation:
                self._listener.start()
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="nowramp-usage", daemon=True
                )
                self._flusher.start()

    def _invalidate(self, target: str) -> None:
        self.stats.invalidations += 1
        if target == "*":
            self.keys_cache.clear()
            self.sessions_cache.clear()
        elif target.startswith("sess_"):
            self.sessions_cache.invalidate(target)
        else:
            self.keys_cache.invalidate(target)

    def _set_subscribed(self, value: bool) -> None:
        if value:  # messages published while we were not subscribed are lost: start clean
            self.stats.subscriptions += 1
            self.keys_cache.clear()
            self.sessions_cache.clear()
        self.keys_cache.accepting = self.sessions_cache.accepting = value
        if value:
            self.subscribed.set()
        else:
            self.subscribed.clear()

    def store_counts(self) -> StoreCounts:
        """The store's counts for metrics (cache, failures per operation, invalidation
        traffic, rate-limit script calls): totals of this process."""
        stats = self.stats
        return StoreCounts(
            cache_hits=self.keys_cache.hits + self.sessions_cache.hits,
            cache_misses=self.keys_cache.misses + self.sessions_cache.misses,
            errors=dict(stats.errors),
            invalidations=stats.invalidations,
            pubsub_reconnects=max(0, stats.subscriptions - 1),
            rate_limit_calls=stats.calls.get("hit_rate_limit", 0),
        )

    # -- lifecycle ----------------------------------------------------------------------------
    def close(self) -> None:
        """Flush usage, stop the background threads and close the sync client."""
        if self._closing.is_set():
            return
        with contextlib.suppress(Exception):
            self.flush_usage()
        self._closing.set()
        for thread in (self._listener.thread, self._flusher):
            if thread is not None and thread is not threading.current_thread():
                thread.join(timeout=2)
        self._clients.close()

    async def aclose(self) -> None:
        """Close the async client of the running event loop."""
        await self._clients.aclose()


def _reset_after_fork(ref: weakref.ref[RedisKeyStore]) -> None:
    store = ref()
    if store is not None:
        store._after_fork()


def _close_at_exit(ref: weakref.ref[RedisKeyStore]) -> None:
    store = ref()
    if store is not None:
        store.close()
