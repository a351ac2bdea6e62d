"""Which scopes a Django view requires, and the ``require_scopes`` decorator for views.

Guards record their scopes on the view (see :mod:`nowramp_auth._route_scopes`), so the
middleware can check them before it makes the one limiter call of a rate-limited key (the
commit point): a request refused for scopes spends no quota. Django REST framework views
declare theirs in ``required_scopes`` (a list, or a dict per HTTP method) and are checked
when :class:`~nowramp_auth.django.rest_framework.HasScopes` is among their permissions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from .._errors import AuthError, ErrorCode
from .._guards import required_scopes, scope_guard
from .._route_scopes import Needs, combined, record_scopes, recorded_scopes
from .._scopes import check_scope_name

__all__ = [
    "CHECKS_DECLARED_SCOPES",
    "NO_SCOPES_FOR_METHOD",
    "declared_scopes",
    "public_error",
    "refusal",
    "require_scopes",
    "route_scopes",
    "view_scopes",
]

V = TypeVar("V")

NO_SCOPES_FOR_METHOD = "(no scopes are declared for this method)"
"""A requirement no key can meet (not a well-formed scope name): what a method missing from
a view's ``required_scopes`` dict requires."""


def public_error(error: AuthError) -> AuthError:
    """``error`` as answered: a refusal for a method missing from a view's ``required_scopes``
    dict says so, instead of naming the requirement no key can meet."""
    if NO_SCOPES_FOR_METHOD not in error.required_scopes:
        return error
    return AuthError(
        ErrorCode.INSUFFICIENT_PERMISSIONS,
        detail="No scopes are declared for this method on this endpoint.",
        key_id=error.key_id,
    )


def refusal(error: AuthError) -> HttpResponse:
    """The standard JSON answer of ``error``."""
    error = public_error(error)
    response = HttpResponse(error.body(), status=error.status_code)
    for name, value in error.headers():
        response[name] = value
    return response


def _refuse_async(error: AuthError) -> Any:
    async def answer() -> HttpResponse:
        return refusal(error)

    return answer()


def require_scopes(*scopes: str, cost: int = 1) -> Callable[[V], V]:
    """Require every one of ``scopes`` on a Django view: a function view (sync or async), or
    a class-based view (decorate the class). A refusal is the standard
    ``INSUFFICIENT_PERMISSIONS`` JSON answer (audited); without an authenticated request,
    ``MISSING_API_KEY``.
    ``cost``: the credits one accepted request of the route spends from a key with credits
    (default 1), charged at the same commit point.

    Example::

        @require_scopes("quotes:read")
        def quotes(request): ...

        @require_scopes("orders:write")
        class Orders(View): ...
    """
    required = required_scopes(scopes, cost)

    def decorator(view: V) -> V:
        if isinstance(view, type):
            return cast(V, _guard_class(view, required))
        return cast(V, scope_guard(cast(Callable[..., Any], view), required, refusal))

    return decorator


def _guard_class(view_class: type, required: frozenset[str]) -> type:
    dispatch = view_class.dispatch  # type: ignore[attr-defined]
    is_async = bool(getattr(view_class, "view_is_async", False))
    # An async class-based view's dispatch returns a coroutine: so must its refusal.
    guarded = scope_guard(dispatch, required, _refuse_async if is_async else refusal)
    view_class.dispatch = functools.wraps(dispatch)(guarded)  # type: ignore[attr-defined]
    record_scopes(view_class, combined([required, recorded_scopes(view_class)]))
    return view_class


def declared_scopes(declared: object, method: str) -> frozenset[str]:
    """The scopes a view's ``required_scopes`` asks of ``method``: a list applies to every
    method; in a dict, a method that is missing requires :data:`NO_SCOPES_FOR_METHOD`, except
    ``HEAD`` (``GET``'s scopes, as Django serves it with ``GET``'s handler) and ``OPTIONS``
    (none: it describes the view and changes nothing)."""
    if declared is None:
        raise ImproperlyConfigured("HasScopes needs required_scopes on the view")
    if isinstance(declared, Mapping):
        method = method.upper()
        scopes = declared.get(method)
        if scopes is None and method == "HEAD":
            scopes = declared.get("GET")
        if scopes is None and method == "OPTIONS":
            return frozenset()
        if scopes is None:
            return frozenset({NO_SCOPES_FOR_METHOD})
        return frozenset(check_scope_name(s) for s in _as_list(scopes))
    return frozenset(check_scope_name(s) for s in _as_list(declared))


def declared_cost(view: object, method: str) -> int:
    """The credits one accepted request of ``method`` costs on a DRF view: its
    ``required_cost`` (an int, or a dict by method), 1 when it declares none."""
    cost = getattr(view, "required_cost", 1)
    if isinstance(cost, Mapping):
        cost = cost.get(method.upper(), 1)
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise ImproperlyConfigured(f"required_cost must be an int of at least 1, got {cost!r}")
    return cost


def _as_list(scopes: object) -> Iterable[str]:
    if isinstance(scopes, str):  # one scope given as a string, not a list
        return [scopes]
    return cast(Iterable[str], scopes)


def view_scopes(view: Callable[..., Any], method: str) -> frozenset[str]:
    """Every scope the view (as the URL resolver returns it) requires of ``method``."""
    parts = [recorded_scopes(view)]
    view_class = getattr(view, "view_class", None) or getattr(view, "cls", None)
    if view_class is not None:
        parts.append(recorded_scopes(view_class))
        if _checks_has_scopes(view_class):
            declared = declared_scopes(getattr(view_class, "required_scopes", None), method)
            cost = declared_cost(view_class, method)
            parts.append(Needs(declared, cost) if cost != 1 else declared)
    return combined(parts)


CHECKS_DECLARED_SCOPES = "__nowramp_checks_required_scopes__"
"""Set on a DRF permission class (``HasScopes``) that checks a view's ``required_scopes``,
so the route resolution finds it without importing DRF."""


def _checks_has_scopes(view_class: type) -> bool:
    permissions = getattr(view_class, "permission_classes", ())
    return any(getattr(p, CHECKS_DECLARED_SCOPES, False) is True for p in permissions)


def route_scopes(request: HttpRequest) -> tuple[frozenset[str], bool]:
    """The scopes the view that ``request`` resolves to requires (none when none matches),
    and whether that varies per request (a per-request urlconf)."""
    urlconf = getattr(request, "urlconf", None)
    try:
        match = resolve(request.path_info, urlconf)
    except Resolver404:
        return frozenset(), urlconf is not None
    return view_scopes(match.func, request.method or "GET"), urlconf is not None
