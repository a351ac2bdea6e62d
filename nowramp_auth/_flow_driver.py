"""The drivers of the authenticator's flows: one sync, one async, the same flows.

Sans-I/O in the h11 sense: a flow is a generator that yields the store operation it needs
(``("get_key", (key_id,))``) and receives the answer. :meth:`FlowDriver.run` answers with the
store's sync methods, :meth:`FlowDriver.run_async` with its ``*_async`` twins (or a cached
answer, without any await). A store that cannot answer is ``AUTH_UNAVAILABLE``, raised inside
the flow (which adds what it knows of the credential), never a success.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from ._client_ip import IPAddress
from ._errors import AuthError, ErrorCode
from ._outcomes import Outcomes
from .stores._errors import StoreUnavailable
from .stores._protocol import NOT_CACHED, KeyStore

__all__ = ["Flow", "FlowDriver", "Op"]

T = TypeVar("T")
Accepted = TypeVar("Accepted", bound=tuple[Any, ...])
Op = tuple[str, tuple[Any, ...]]
Flow = Generator[Op, Any, T]

_UNAVAILABLE = object()
"""What a driver hands on when a store operation failed (see :func:`_unavailable`)."""


class FlowDriver:
    """Runs flows against one store, and ends each in :class:`Outcomes` (accepted or
    refused, once)."""

    def __init__(self, store: KeyStore, outcomes: Outcomes) -> None:
        self.store = store
        self.outcomes = outcomes
        self._never_blocks = bool(getattr(store, "request_path_never_blocks", False))
        self._peek: Callable[[str, tuple[Any, ...]], Any] | None = getattr(store, "peek", None)

    def run(
        self, flow: Flow[Accepted], ip: IPAddress | None, method: str | None, path: str | None
    ) -> Accepted:
        """Drive ``flow`` with the store's sync methods."""
        started = self.outcomes.started()
        try:
            op = next(flow)
            while True:
                op = _advance(flow, self._call(op))
        except BaseException as ended:
            value: Accepted = self._end(ended, ip, method, path, started)
            return value

    async def run_async(
        self, flow: Flow[Accepted], ip: IPAddress | None, method: str | None, path: str | None
    ) -> Accepted:
        """Drive ``flow`` without blocking the event loop: cached answers need no await."""
        if self._never_blocks:
            # An in-process store has nothing to await: skip the coroutine machinery.
            return self.run(flow, ip, method, path)
        peek = self._peek
        started = self.outcomes.started()
        try:
            op = next(flow)
            while True:
                result = peek(*op) if peek is not None else NOT_CACHED
                if result is NOT_CACHED:
                    result = await self._call_async(op)
                op = _advance(flow, result)
        except BaseException as ended:
            value: Accepted = self._end(ended, ip, method, path, started)
            return value

    def _call(self, op: Op) -> Any:
        try:
            return getattr(self.store, op[0])(*op[1])
        except StoreUnavailable:
            return _UNAVAILABLE

    async def _call_async(self, op: Op) -> Any:
        call: Callable[..., Awaitable[Any]] = getattr(self.store, op[0] + "_async")
        try:
            return await call(*op[1])
        except StoreUnavailable:
            return _UNAVAILABLE

    def _end(
        self,
        ended: BaseException,
        ip: IPAddress | None,
        method: str | None,
        path: str | None,
        started: float,
    ) -> Any:
        # How a flow ended, for both drivers: its value (accepted), or its refusal (raised).
        if isinstance(ended, StopIteration):
            self.outcomes.accepted(ended.value, ip, method, path, started)
            return ended.value
        if isinstance(ended, AuthError):
            self.outcomes.failed(ended, ip, method, path, started)
        raise ended


def _advance(flow: Flow[Any], result: Any) -> Op:
    # The flow's next operation, given the last one's answer.
    return flow.send(result) if result is not _UNAVAILABLE else _unavailable(flow)


def _unavailable(flow: Flow[Any]) -> Op:
    # The store could not answer: AUTH_UNAVAILABLE, raised inside the flow (which adds what it
    # knows of the credential) and outside the driver's except block (no chained cause).
    return flow.throw(AuthError(ErrorCode.AUTH_UNAVAILABLE, retry_after=1))


def store_call(call: Callable[[], T]) -> T:
    """A management-path store call: ``AUTH_UNAVAILABLE`` when the store cannot answer."""
    try:
        return call()
    except StoreUnavailable:
        raise AuthError(ErrorCode.AUTH_UNAVAILABLE, retry_after=1) from None
