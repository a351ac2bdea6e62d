"""Route guards and middleware options shared by both adapters (framework-free).

``scope_guard`` wraps an endpoint (``async def`` or plain ``def``) so that it runs only when
the current request holds the required scopes; each adapter supplies how a refusal becomes
its framework's response. ``middleware_options`` validates what both middlewares accept, so
configuration errors fail at construction with the same messages.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from ._context import refuse_scopes, request_var
from ._errors import AuthError
from ._http import PublicPaths
from ._route_scopes import Needs, combined, record_scopes, recorded_scopes
from ._scopes import check_scope_name

if TYPE_CHECKING:
    from ._authenticator import Authenticator

__all__ = ["middleware_options", "required_scopes", "scope_guard"]


def required_scopes(scopes: Iterable[str], cost: int = 1) -> frozenset[str]:
    """Validate the scopes given to a ``require_scopes`` decorator (at least one), and the
    credits a request of the route costs (``cost``, at least 1)."""
    required = frozenset(check_scope_name(s) for s in scopes)
    if not required:
        raise ValueError("require_scopes needs at least one scope")
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ValueError(f"cost must be an int of at least 1, got {cost!r}")
    return Needs(required, cost) if cost != 1 else required


def scope_guard(
    endpoint: Callable[..., Any],
    required: frozenset[str],
    refuse: Callable[[AuthError], Any],
    drop_kwarg: str | None = None,
    *,
    plain_call: bool = False,
) -> Callable[..., Any]:
    """``endpoint`` wrapped with the scope check; same kind (sync/async), same metadata.

    The accepted case runs on every request of a guarded route: one context read and one
    subset test before the endpoint is called. With ``plain_call``, an ``async def``
    endpoint is wrapped in a plain function that returns the endpoint's own coroutine (or an
    awaitable refusal), marked as a coroutine function so that frameworks await it: no
    coroutine of the guard's own per request. Starlette and FastAPI detect the mark (see
    :func:`mark_coroutine_function`); Flask on Python 3.11 does not (it asks ``inspect``, and
    would return the coroutine unawaited), so the other adapters keep a coroutine wrapper."""
    get_context = request_var.get
    drop = drop_kwarg or ""
    if plain_call and inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        def calls_async(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            context = get_context()
            if context is not None and required <= context[0].scopes:
                if kwargs:  # FastAPI calls by keyword (and passes the OpenAPI parameter)
                    kwargs.pop(drop, None)
                    return endpoint(*args, **kwargs)  # type: ignore[no-any-return]
                return endpoint(*args)  # type: ignore[no-any-return]  # Starlette: (request)
            return _ready(refuse(refuse_scopes(required)))

        mark_coroutine_function(calls_async)
        record_scopes(calls_async, combined([required, recorded_scopes(endpoint)]))
        return calls_async
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def async_guarded(*args: Any, **kwargs: Any) -> Any:
            context = get_context()
            if context is not None and required <= context[0].scopes:
                if kwargs:  # FastAPI calls by keyword (and passes the OpenAPI parameter)
                    kwargs.pop(drop, None)
                    return await endpoint(*args, **kwargs)
                return await endpoint(*args)  # Starlette: endpoint(request)
            return refuse(refuse_scopes(required))

        record_scopes(async_guarded, combined([required, recorded_scopes(endpoint)]))
        return async_guarded

    @functools.wraps(endpoint)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        context = get_context()
        if context is not None and required <= context[0].scopes:
            if kwargs:
                kwargs.pop(drop, None)
                return endpoint(*args, **kwargs)
            return endpoint(*args)
        return refuse(refuse_scopes(required))

    record_scopes(guarded, combined([required, recorded_scopes(endpoint)]))
    return guarded


async def _ready(value: Any) -> Any:
    return value


def mark_coroutine_function(function: Callable[..., Any]) -> None:
    """Mark a plain function that returns a coroutine so that ``inspect`` (3.12+) and
    ``asyncio.iscoroutinefunction`` (which Starlette and FastAPI use on 3.11) report it as a
    coroutine function: what ``asgiref.sync.markcoroutinefunction`` does."""
    mark = getattr(inspect, "markcoroutinefunction", None)
    if mark is not None:  # Python 3.12+
        mark(function)
    else:  # Python 3.11: asyncio's own marker
        function._is_coroutine = asyncio.coroutines._is_coroutine  # type: ignore[attr-defined]


def middleware_options(
    authenticator: Authenticator, public_paths: Iterable[str], widget_sessions_path: str | None
) -> PublicPaths:
    """Check both middlewares' options; returns the parsed public paths."""
    from ._authenticator import Authenticator

    if not isinstance(authenticator, Authenticator):
        raise TypeError("authenticator must be a nowramp_auth.Authenticator")
    if widget_sessions_path is not None and not str(widget_sessions_path).startswith("/"):
        raise ValueError(f"widget_sessions_path must start with '/': {widget_sessions_path!r}")
    return PublicPaths(public_paths)
