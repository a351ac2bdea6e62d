"""Auto-pipelining of rate-limit script calls on one event loop.

A rate-limited key costs one atomic script call per request. Requests in flight at the same
moment need not each wait for their own round trip: calls are queued and sent together as one
non-transactional pipeline of ``EVALSHA`` calls, in the next turn of the event loop, or, while
a flush is in flight, as soon as it is answered (one flush in flight per loop: under load the
pipelines grow rather than multiply, so each request pays a smaller share of one). A call thus
waits at most for the flush before it (bounded by ``queue_timeout`` and ``socket_timeout``).
Redis still runs each script alone and atomically, so the limit holds exactly as with
separate calls; only the round trips are shared. Each pipeline takes one gate permit (one
connection), so batches also wait rather than fail under a burst.

A script Redis does not know (``NOSCRIPT``, after a restart) did not run: it is loaded again
and those calls are sent again. Any other failure of a pipeline (a timeout after sending, a
dropped connection) leaves the outcome unknown, so nothing is retried: every call of that
batch fails closed with ``StoreUnavailable``.

With a :class:`Merging`, calls that name the same ``group`` in one flush (the rate-limit checks
of one key) are merged into one script call that is told how many requests it serves and
answers for all of them at once, still in one atomic step; its ``split`` turns that one reply
into one reply per call, in the order the calls were made. A burst on one key then costs
Redis one script run per flush instead of one per request.

redis-py refuses ``EVALSHA`` in a Redis Cluster pipeline, so on a cluster each merged call is
its own command, sent concurrently (still behind the gate, so a burst waits rather than
fails).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.exceptions import NoScriptError

from ._errors import StoreUnavailable
from ._redis_clients import unavailable

if TYPE_CHECKING:
    from ._redis_clients import RedisClients, _LoopState
    from ._stats import StoreStats

__all__ = ["MAX_BATCH", "MAX_MERGED", "Merging", "ScriptPipeline"]

MAX_BATCH = 256
"""Script calls per pipeline."""
MAX_MERGED = 256
"""Requests one merged call answers for."""


class Merging(NamedTuple):
    """How the calls of one group become one script call, and its reply one per call."""

    argv: Callable[[Sequence[Any], int], list[Any]]
    """``(the first call's arguments, calls merged)`` to the script's arguments."""
    split: Callable[[Any, int, Sequence[Any]], list[Any]]
    """``(reply, calls merged, the first call's arguments)`` to one reply per call."""


class _Call:
    """One script command of a pipeline, answering for one or more callers (``futures``)."""

    __slots__ = ("args", "futures", "keys")

    def __init__(self, keys: Sequence[str], args: Sequence[Any], future: asyncio.Future[Any]):
        self.keys = keys
        self.args = args
        self.futures = [future]


class ScriptPipeline:
    """Batches the calls of one script made on one event loop into pipelines; with
    ``merging``, calls naming the same ``group`` in one flush merge into one call (see the
    module's docstring). With ``stats``, script calls sent and callers failed count under
    ``operation``."""

    def __init__(
        self,
        clients: RedisClients,
        state: _LoopState,
        script: str,
        merging: Merging | None = None,
        stats: StoreStats | None = None,
        operation: str = "",
    ) -> None:
        self._stats = stats
        self._operation = operation or script
        self._clients = clients
        self._state = state
        self._script = script
        self._merging = merging
        self._queue: list[_Call] = []
        self._groups: dict[Hashable, _Call] = {}
        self._scheduled = False
        self._in_flight = 0  # tasks of the last flush still running (one flush at a time)
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, keys: Sequence[str], args: Sequence[Any], group: Hashable = None) -> Any:
        """Run the script once with ``keys`` and ``args`` (in the next shared pipeline); with
        a ``group``, possibly as part of one call merged with others of that group."""
        return await self.submit(keys, args, group)

    def submit(
        self, keys: Sequence[str], args: Sequence[Any], group: Hashable = None
    ) -> asyncio.Future[Any]:
        """:meth:`call` without a coroutine of its own: the future of the call's reply (the
        request path awaits it directly)."""
        future: asyncio.Future[Any] = self._state.loop.create_future()
        if self._merging is not None and group is not None:
            merged = self._groups.get(group)
            if merged is not None and len(merged.futures) < MAX_MERGED:
                merged.futures.append(future)
                return future
            merged = self._groups[group] = _Call(keys, args, future)
            self._queue.append(merged)
        else:
            self._queue.append(_Call(keys, args, future))
        if not self._scheduled and not self._in_flight:
            self._scheduled = True
            self._state.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._queue:
            return
        self._groups = {}
        queue, self._queue = self._queue, []
        if self._clients.cluster:  # each (merged) call its own command, concurrently
            for call in queue:
                self._spawn(self._send_one(call))
            return
        for start in range(0, len(queue), MAX_BATCH):
            self._spawn(self._send(queue[start : start + MAX_BATCH]))

    def _spawn(self, coroutine: Any) -> None:
        task = self._state.loop.create_task(coroutine)
        self._tasks.add(task)
        self._in_flight += 1
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        # One flush in flight at a time: calls made meanwhile wait in the queue (merging
        # with each other) and go out together as soon as the flush in flight is answered.
        self._tasks.discard(task)
        self._in_flight -= 1
        if not self._in_flight and self._queue and not self._scheduled:
            self._scheduled = True
            self._state.loop.call_soon(self._flush)

    def _command_args(self, call: _Call) -> Sequence[Any]:
        merging = self._merging
        return call.args if merging is None else merging.argv(call.args, len(call.futures))

    async def _send_one(self, call: _Call) -> None:
        self._sent(1)
        try:
            for attempt in (1, 2):
                sha = await self._clients.sha_async(self._script, reload=attempt == 2)
                evalsha = functools.partial(
                    _evalsha, sha=sha, keys=call.keys, args=self._command_args(call)
                )
                try:
                    result = await self._clients.write_async(evalsha, self._state)
                except StoreUnavailable as exc:
                    if attempt == 1 and isinstance(exc.__cause__, NoScriptError):
                        continue  # not run: safe to send again
                    raise
                self._settle(call, result)
                return
        except BaseException as exc:
            self._failed(_fail([call], exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def _send(self, batch: list[_Call]) -> None:
        self._sent(len(batch))
        try:
            pending = batch
            for attempt in (1, 2):
                sha = await self._clients.sha_async(self._script, reload=attempt == 2)
                commands = [(call.keys, self._command_args(call)) for call in pending]
                results: list[Any] = await self._clients.write_async(
                    functools.partial(_execute, sha=sha, commands=commands), self._state
                )
                retry: list[_Call] = []
                for call, result in zip(pending, results, strict=True):
                    if isinstance(result, NoScriptError) and attempt == 1:
                        retry.append(call)  # not run: safe to send again
                    else:
                        self._settle(call, result)
                if not retry:
                    return
                pending = retry
        except BaseException as exc:
            self._failed(_fail(batch, exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _sent(self, calls: int) -> None:
        if self._stats is not None:
            self._stats.sent(self._operation, calls)

    def _failed(self, callers: int) -> None:
        # Each caller whose call failed counts once (a retry after NOSCRIPT is not a failure).
        if self._stats is not None and callers:
            self._stats.failed(self._operation, callers)

    def _settle(self, call: _Call, result: Any) -> None:
        merging = self._merging
        if isinstance(result, BaseException) or merging is None:
            failed = sum(_settle(future, result) for future in call.futures)
            self._failed(failed)
            return
        shares = merging.split(result, len(call.futures), call.args)
        for future, share in zip(call.futures, shares, strict=True):
            _settle(future, share)


def _fail(calls: list[_Call], exc: BaseException) -> int:
    # Every caller still waiting gets the error; returns how many did.
    error = exc if isinstance(exc, StoreUnavailable) else unavailable(exc)
    failed = 0
    for call in calls:
        for future in call.futures:
            if not future.done():
                future.set_exception(error)
                failed += 1
    return failed


async def _execute(
    client: Any, *, sha: str, commands: list[tuple[Sequence[str], Sequence[Any]]]
) -> list[Any]:
    # One write of every call, then one reply per call, on one connection of the client's
    # pool: what redis-py's Pipeline does, without its per-command retry and callback layers
    # (this is the request path of every rate-limited request). An error reply belongs to
    # its call only; any other failure leaves the connection's state unknown: drop it.
    pool = client.connection_pool
    connection = await pool.get_connection()  # connected, with nothing left unread
    try:
        packed = b"".join(_evalsha_command(sha, keys, args) for keys, args in commands)
        # One timer bounds the write and every reply of the batch (socket_timeout). The
        # write goes straight to the connection's stream: redis-py's send_packed_command
        # runs it in a task of its own (asyncio.wait_for) for its timeout. The parser returns
        # an error reply (e.g. NOSCRIPT) as a ResponseError object, which belongs to its call.
        writer, parser = connection._writer, connection._parser
        results: list[Any] = []
        async with asyncio.timeout(connection.socket_timeout):
            writer.write(packed)
            await writer.drain()
            for _ in commands:
                results.append(await parser.read_response())
        return results
    except BaseException:
        await connection.disconnect(nowait=True)
        raise
    finally:
        await pool.release(connection)


_PREFIXES: dict[tuple[Any, ...], bytes] = {}


def _evalsha_command(sha: str, keys: Sequence[str], args: Sequence[Any]) -> bytes:
    # RESP by hand: redis-py's general packer costs several times the whole rest of a
    # rate-limited request. The part up to the arguments (command, script, keys) repeats
    # for every request of a key: it is packed once.
    lookup = (sha, len(args), *keys)
    prefix = _PREFIXES.get(lookup)
    if prefix is None:
        head = [b"EVALSHA", sha.encode(), str(len(keys)).encode()]
        head += [key.encode() for key in keys]
        prefix = b"*%d\r\n" % (len(head) + len(args)) + b"".join(
            b"$%d\r\n%s\r\n" % (len(p), p) for p in head
        )
        if len(_PREFIXES) >= 10_000:
            _PREFIXES.clear()
        _PREFIXES[lookup] = prefix
    tail = [str(arg).encode() for arg in args]
    return prefix + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in tail)


async def _evalsha(client: Any, *, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
    return await client.evalsha(sha, len(keys), *keys, *args)


def _settle(future: asyncio.Future[Any], result: Any) -> bool:
    # The caller's answer; True when it is a failure.
    if future.done():  # the caller went away (cancelled)
        return False
    if isinstance(result, BaseException):
        future.set_exception(unavailable(result))
        return True
    future.set_result(result)
    return False
