"""Auto-pipelining of rate-limit script calls on one event loop.

A rate-limited key costs one atomic script call per request. Requests in flight at the same
moment need not each wait for their own round trip: calls made during one turn of the event
loop are queued and sent together, in the next turn, as one non-transactional pipeline of
``EVALSHA`` calls. Redis still runs each script alone and atomically, so the limit holds
exactly as with separate calls; only the round trips are shared. Each pipeline takes one gate
permit (one connection), so batches also wait rather than fail under a burst.

A script Redis does not know (``NOSCRIPT``, after a restart) did not run: it is loaded again
and those calls are sent again. Any other failure of a pipeline (a timeout after sending, a
dropped connection) leaves the outcome unknown, so nothing is retried: every call of that
batch fails closed with ``StoreUnavailable``.

redis-py refuses ``EVALSHA`` in a Redis Cluster pipeline, so on a cluster each call is its
own command (still behind the gate, so a burst waits rather than fails).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ._errors import StoreUnavailable
from ._redis_clients import unavailable

if TYPE_CHECKING:
    from ._redis_clients import RedisClients, _LoopState

__all__ = ["MAX_BATCH", "ScriptPipeline"]

MAX_BATCH = 256
_Call = tuple[Sequence[str], Sequence[Any], "asyncio.Future[Any]"]


class ScriptPipeline:
    """Batches the calls of one script made on one event loop into pipelines."""

    def __init__(self, clients: RedisClients, state: _LoopState, script: str) -> None:
        self._clients = clients
        self._state = state
        self._script = script
        self._queue: list[_Call] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run the script once with ``keys`` and ``args`` (in the next shared pipeline)."""
        if self._clients.cluster:
            return await self._one(keys, args)
        future: asyncio.Future[Any] = self._state.loop.create_future()
        self._queue.append((keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            self._state.loop.call_soon(self._flush)
        return await future

    async def _one(self, keys: Sequence[str], args: Sequence[Any]) -> Any:
        for attempt in (1, 2):
            sha = await self._clients.sha_async(self._script, reload=attempt == 2)
            try:
                return await self._clients.write_async(
                    functools.partial(_evalsha, sha=sha, keys=keys, args=args), self._state
                )
            except StoreUnavailable as exc:
                if attempt == 1 and isinstance(exc.__cause__, NoScriptError):
                    continue  # not run: safe to send again
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            task = self._state.loop.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            pending = batch
            for attempt in (1, 2):
                sha = await self._clients.sha_async(self._script, reload=attempt == 2)
                results: list[Any] = await self._clients.write_async(
                    functools.partial(_execute, sha=sha, calls=pending), self._state
                )
                retry: list[_Call] = []
                for call, result in zip(pending, results, strict=True):
                    if isinstance(result, NoScriptError) and attempt == 1:
                        retry.append(call)  # not run: safe to send again
                    else:
                        _settle(call[2], result)
                if not retry:
                    return
                pending = retry
        except BaseException as exc:
            error = exc if isinstance(exc, StoreUnavailable) else unavailable(exc)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if isinstance(exc, asyncio.CancelledError):
                raise


async def _execute(client: Any, *, sha: str, calls: list[_Call]) -> list[Any]:
    # One write of every call, then one reply per call, on one connection of the client's
    # pool: what redis-py's Pipeline does, without its per-command retry and callback layers
    # (this is the request path of every rate-limited request). An error reply belongs to
    # its call only; any other failure leaves the connection's state unknown: drop it.
    pool = client.connection_pool
    connection = await pool.get_connection()
    try:
        packed = b"".join(_evalsha_command(sha, keys, args) for keys, args, _ in calls)
        await connection.send_packed_command(packed)
        # One timer bounds every reply of the batch (socket_timeout); the connection's
        # parser returns an error reply (e.g. NOSCRIPT) as a ResponseError object, which
        # belongs to its call only.
        parser = connection._parser
        results: list[Any] = []
        async with asyncio.timeout(connection.socket_timeout):
            for _ in calls:
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


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if future.done():  # the caller went away (cancelled)
        return
    if isinstance(result, BaseException):
        future.set_exception(unavailable(result))
    else:
        future.set_result(result)
