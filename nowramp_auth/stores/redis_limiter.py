"""``RedisRateLimiter``: exact, batched, cluster-wide rate limits in Redis, for any store.

One atomic Lua step per request (:data:`~._redis_scripts.RATE_LIMIT`) on Redis' own clock, so
every instance shares one time line. Up to 1,000 requests per window the budget is an exact
sliding log; above, counts per sub-window that may refuse up to one sub-window early, never
late. Requests of one key in flight together on an event loop share one script call, and
calls of different keys share one pipeline (see :mod:`._redis_pipeline`); a call whose
outcome is unknown (a timeout after sending) is never retried: it fails closed.

:class:`~nowramp_auth.RedisKeyStore` counts its keys' limits with one, sharing its
connections; any other store takes one as ``rate_limiter=`` (e.g. a PostgreSQL store whose
limits are counted in Redis).
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from .._budgets import Limits, Plan, budget_counters, credits_tag, refilled
from .._models import KeyRecord, RateLimit, RateLimitStatus, accepted_status
from ._redis_clients import DEFAULT_MAX_CONNECTIONS, DEFAULT_QUEUE_TIMEOUT, RedisClients
from ._redis_codec import KeyNames
from ._redis_pipeline import Merging, ScriptPipeline
from ._redis_scripting import loop_pipeline, run_script
from ._sliding_log import EXACT_LIMIT, SUB_WINDOWS
from ._stats import StoreStats, counts_failures

__all__ = ["RedisRateLimiter"]

_RateCall = tuple[list[str], tuple[int, ...], str]
"""A rate-limit script call's keys, its limits' arguments and its merge group."""


class RedisRateLimiter:
    """Rate limits of key lineages in Redis (single node or Redis Cluster).

    Parameters:
        url: ``redis://host:port/db`` (``rediss://`` for TLS); for a cluster, any node.
        cluster: use the Redis Cluster protocol.
        namespace: prefix of its Redis keys (default ``"nowramp"``, as the key store's).
        socket_timeout: seconds to wait for Redis' reply once a call is sent (default 0.5);
            an unanswered limiter call fails closed.
        connect_timeout: seconds to wait for a connection (default 0.25).
        max_connections: connections per client (default 50); more concurrent calls wait.
        queue_timeout: seconds a call may wait for a free connection (default 5).

    Example::

        limiter = RedisRateLimiter.from_url("redis://cache:6379/0")
        status = limiter.hit_rate_limit(record.lineage, RateLimit(100, timedelta(minutes=1)), now)
    """

    def __init__(
        self,
        url: str,
        *,
        cluster: bool = False,
        namespace: str = "nowramp",
        socket_timeout: float = 0.5,
        connect_timeout: float = 0.25,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        queue_timeout: float = DEFAULT_QUEUE_TIMEOUT,
    ) -> None:
        clients = RedisClients.connect(
            url,
            cluster=cluster,
            socket_timeout=socket_timeout,
            connect_timeout=connect_timeout,
            max_connections=max_connections,
            queue_timeout=queue_timeout,
        )
        self._share(clients, KeyNames(namespace), StoreStats())

    @classmethod
    def from_url(cls, url: str, *, cluster: bool = False, **options: Any) -> RedisRateLimiter:
        """A limiter for ``url``; ``cluster=True`` for Redis Cluster. Options as for the
        class."""
        return cls(url, cluster=cluster, **options)

    @classmethod
    def sharing(cls, clients: RedisClients, names: KeyNames, stats: StoreStats) -> RedisRateLimiter:
        """A limiter on a store's own connections, key names and counts (the Redis store's)."""
        limiter = cls.__new__(cls)
        limiter._share(clients, names, stats)
        return limiter

    def _share(self, clients: RedisClients, names: KeyNames, stats: StoreStats) -> None:
        self._clients = clients
        self.names = names
        self.stats = stats
        """Script calls sent and failures, for the metrics of the store that uses it."""
        self._calls: dict[str, tuple[Limits, _RateCall]] = {}
        self._merging = Merging(self._argv, _statuses)
        self._merging_several = Merging(self._argv_several, _statuses_several)
        self.after_fork()

    def after_fork(self) -> None:
        """A forked child is another process: its logged members get a prefix of their own."""
        self._member_prefix = secrets.token_hex(6) + ":"
        self._members = itertools.count()

    def __repr__(self) -> str:
        return f"RedisRateLimiter(namespace={self.names.ns!r}, cluster={self._clients.cluster})"

    def _call(self, lineage: str, limit: Limits) -> _RateCall:
        # Key names, the limit's arguments and the merge group, built once per (lineage,
        # limit): this runs per request, so the lookup is by the lineage (a str: its hash is
        # cached) and the limit is compared by identity (a record version's limit is one
        # object), not hashed. The unique member is drawn per script call (_argv).
        entry = self._calls.get(lineage)
        if entry is not None and (entry[0] is limit or entry[0] == limit):
            return entry[1]
        if not isinstance(limit, RateLimit):
            call = self._call_several(lineage, limit)
            self._calls[lineage] = (limit, call)
            return call
        keys = [self.names.rate_log(lineage), self.names.rate_counts(lineage)]
        sub_windows = 0 if limit.requests <= EXACT_LIMIT else SUB_WINDOWS
        # Calls merge only with calls of the same lineage under the same limit.
        group = f"{lineage}\x00{limit.requests}\x00{limit.window_ms}"
        call = (keys, (limit.requests, limit.window_ms, sub_windows), group)
        if len(self._calls) >= 10_000:
            self._calls.clear()
        self._calls[lineage] = (limit, call)
        return call

    def _call_several(self, lineage: str, limits: tuple[RateLimit, ...] | Plan) -> _RateCall:
        # RATE_LIMITS: every counter the request touches under one hash tag (one slot): the
        # lineage's, or the project's when the project has budgets (its keys' own counters
        # live there too, so one script call reaches all of them on a cluster).
        plan = limits if isinstance(limits, Plan) else None
        tag = credits_tag(plan.project_id) if plan else None
        pairs = budget_counters(lineage, limits)
        keys = self._counter_keys(lineage, limits)
        # m, then how many of the m are the key's own (the rest are its project's: which
        # kind refused a request, for the metrics); the script is not sent the second.
        own = len(plan.own) if plan else len(pairs)
        args: list[int] = [len(pairs), own]
        for _, limit in pairs:
            sub_windows = 0 if limit.requests <= EXACT_LIMIT else SUB_WINDOWS
            args += [limit.requests, limit.window_ms, sub_windows]
        credits = plan.credits if plan else None
        if credits is not None:
            keys.append(self.names.credits(lineage, tag))
            refill = credits.refill
            cost = plan.cost if plan else 1
            args += [1, cost, refill.amount if refill else 0, refill.every_ms if refill else 0]
        else:
            args += [0, 1, 0, 0]
        group = lineage + "".join(f"\x00{a}" for a in args)
        return keys, tuple(args), group

    def _argv_several(self, args: Sequence[Any], requests: int) -> list[Any]:
        # A call of a key with credits carries the application's clock (its refills) as its
        # last argument (see _with_now); merged calls take the first one's.
        member = f"{self._member_prefix}{next(self._members)}"
        m = int(args[0])
        tail = args[3 * m + 2 :]
        limits = args[2 : 3 * m + 2]
        return [m, *limits, member, requests, *tail, *([0] if len(tail) == 4 else [])]

    def _argv(self, limit: Sequence[Any], requests: int) -> list[Any]:
        # RATE_LIMIT's ARGV for one call charging `requests` requests; the member prefix is
        # unique in every process (and per call), so every logged request is its own member.
        member = f"{self._member_prefix}{next(self._members)}"
        return [limit[0], limit[1], member, limit[2], requests]

    def _pipeline(self, script: str = "RATE_LIMIT") -> ScriptPipeline:
        # The running loop's pipeline of a limiter script (per request: two lookups):
        # RATE_LIMIT for one limit, RATE_LIMITS for several, pipelined and merged the same way.
        pipeline: ScriptPipeline | None = self._clients.loop_state().batchers.get(script)
        if pipeline is None:
            merging = self._merging if script == "RATE_LIMIT" else self._merging_several
            pipeline = loop_pipeline(self._clients, script, self.stats, "hit_rate_limit", merging)
        return pipeline

    @counts_failures("hit_rate_limit")
    def hit_rate_limit(self, lineage: str, limit: Limits, now: datetime) -> RateLimitStatus:
        """One atomic step of the lineage's budget on Redis' clock (``now`` is not used);
        with several limits, all of them or none."""
        keys, args, _ = self._call(lineage, limit)
        self.stats.sent("hit_rate_limit")
        if not isinstance(limit, RateLimit):
            args = _with_now(limit, args, now.timestamp())
            reply = run_script(self._clients, "RATE_LIMITS", keys, self._argv_several(args, 1))
            return _statuses_several(reply, 1, args)[0]
        reply = run_script(self._clients, "RATE_LIMIT", keys, self._argv(args, 1))
        return _statuses(reply, 1, args)[0]

    def hit_rate_limit_async(
        self, lineage: str, limit: Limits, now: datetime
    ) -> Awaitable[RateLimitStatus]:
        """Async twin of :meth:`hit_rate_limit`: the future of the status. The calls of one
        lineage sent in one flush of the event loop's pipeline are charged in one script
        call, and calls of different lineages share the pipeline (see ``_redis_pipeline``).
        A plain method returning the future: no coroutine of its own per request."""
        keys, args, group = self._call(lineage, limit)
        if not isinstance(limit, RateLimit):
            args = _with_now(limit, args, now.timestamp())
            return self._pipeline("RATE_LIMITS").submit(keys, args, group)
        return self._pipeline().submit(keys, args, group)

    def rate_charger(
        self, lineage: str, limit: Limits
    ) -> Callable[[float], Awaitable[RateLimitStatus]]:
        """The lineage's async limiter call under ``limit``, built once per record version (the
        authenticator keeps it with the verified key): per request, only the pipeline's
        ``submit``. ``now`` is not used (Redis' clock is)."""
        keys, args, group = self._call(lineage, limit)
        if not isinstance(limit, RateLimit):
            if isinstance(limit, Plan) and limit.credits is not None:

                def charge_credits(now: float) -> Awaitable[RateLimitStatus]:
                    # The application's clock rides along: the credits' refills are due by it.
                    return self._pipeline("RATE_LIMITS").submit(keys, _with_clock(args, now), group)

                return charge_credits

            def charge_several(now: float) -> Awaitable[RateLimitStatus]:
                return self._pipeline("RATE_LIMITS").submit(keys, args, group)

            return charge_several

        def charge(now: float) -> Awaitable[RateLimitStatus]:
            return self._pipeline().submit(keys, args, group)

        return charge

    def peek_rate_limits(self, lineage: str, limits: Limits, now: datetime) -> list[int]:
        """The requests each counter of ``limits`` holds in its window now (in
        ``budget_counters`` order), counting nothing: the dashboard's usage."""
        windows = [limit.window_ms for _, limit in budget_counters(lineage, limits)]
        if not windows:
            return []
        keys = self._counter_keys(lineage, limits)
        reply = run_script(self._clients, "PEEK_LIMITS", keys, windows)
        return [int(used) for used in reply]

    def _counter_keys(self, lineage: str, limits: Limits) -> list[str]:
        # The log and the counts of every counter of `limits` (budget_counters' order): under
        # the lineage's hash tag, or the project's for a Plan (see _call_several).
        tag = credits_tag(limits.project_id) if isinstance(limits, Plan) else None
        keys: list[str] = []
        for counter, _ in budget_counters(lineage, limits):
            keys += [self.names.rate_log(counter, tag), self.names.rate_counts(counter, tag)]
        return keys

    def set_credits(self, record: KeyRecord, remaining: int, at: datetime) -> None:
        """Start the credits of ``record``'s lineage (refills count from ``at``)."""
        name = self.names.credits(record.lineage, credits_tag(record.project_id))
        fields = {"r": remaining, "a": int(at.timestamp() * 1000), "d": 0}
        self._clients.write(lambda client: client.hset(name, mapping=fields))

    def add_credits(self, record: KeyRecord, count: int, at: datetime) -> int:
        """Add ``count`` credits (one atomic HINCRBY); the count left, due refills counted."""
        name = self.names.credits(record.lineage, credits_tag(record.project_id))
        self._clients.write(lambda client: client.hincrby(name, "r", count))
        left = self.get_credits(record, at)
        return 0 if left is None else left

    def get_credits(self, record: KeyRecord, at: datetime) -> int | None:
        """The credits ``record``'s lineage has left at ``at`` (due refills counted)."""
        if record.credits is None:
            return None
        name = self.names.credits(record.lineage, credits_tag(record.project_id))
        left, anchor, done = self._clients.read(lambda client: client.hmget(name, "r", "a", "d"))
        if left is None:
            return 0
        now_ms = int(at.timestamp() * 1000)
        return refilled(int(left), int(anchor), int(done), record.credits, now_ms)[0]

    def close(self) -> None:
        """Close the sync client (a limiter sharing a store's clients leaves that to it)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the async client of the running event loop."""
        await self._clients.aclose()


def _statuses(reply: list[Any], charged: int, args: Sequence[Any]) -> list[RateLimitStatus]:
    # The RATE_LIMIT script's one reply for `charged` requests of one key, as one status per
    # request in the order they were made: the first `accepted` in, the rest refused.
    accepted, remaining, retry_ms, reset_ms = (int(x) for x in reply)
    requests, window_ms = int(args[0]), int(args[1])
    reset = window_ms / 1000
    last = remaining + accepted - 1
    statuses = [accepted_status(requests, last - index, reset) for index in range(accepted)]
    if accepted < charged:
        refused = RateLimitStatus(
            requests, 0, reset_ms / 1000, False, retry_ms / 1000, refused_by="key"
        )
        statuses += [refused] * (charged - accepted)
    return statuses


def _statuses_several(reply: list[Any], charged: int, args: Sequence[Any]) -> list[RateLimitStatus]:
    # RATE_LIMITS' reply for `charged` requests of one key with several limits: the
    # accepted ones carry the state of the limit closest to refusing, the refused ones that
    # of the refusing limit that frees last.
    accepted, remaining, limit, retry_ms, reset_ms, window_ms, left, out, refusing = (
        int(x) for x in reply
    )
    cost = int(args[3 * int(args[0]) + 3])
    reset = window_ms / 1000
    last = remaining + accepted - 1
    if left >= 0:  # a key with credits: what was left after each request, too
        first = left + (accepted - 1) * cost
        credits: list[int | None] = [first - index * cost for index in range(accepted)]
    else:
        credits = [None] * accepted
    statuses = [
        accepted_status(limit, last - index, reset, left_after)
        for index, left_after in enumerate(credits)
    ]
    if accepted < charged:
        refused = RateLimitStatus(
            limit,
            0,
            reset_ms / 1000,
            False,
            retry_ms / 1000,
            left if left >= 0 else None,
            bool(out),
            "credits" if out else "key" if refusing < int(args[1]) else "project",
        )
        statuses += [refused] * (charged - accepted)
    return statuses


def _with_now(limits: Limits, args: tuple[Any, ...], now: float) -> tuple[Any, ...]:
    # The application's clock (epoch ms) for a key with credits: its refills are due by it.
    if isinstance(limits, Plan) and limits.credits is not None:
        return _with_clock(args, now)
    return args


def _with_clock(args: tuple[Any, ...], now: float) -> tuple[Any, ...]:
    # RATE_LIMITS' last argument for a key with credits: the application's now, in epoch ms.
    return (*args, int(now * 1000))
