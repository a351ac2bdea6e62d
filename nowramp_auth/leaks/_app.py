"""``secret_scanning_app``: GitHub secret-scanning alerts and public leak reports revoke keys.

``POST /`` takes GitHub's alert (a JSON array of ``{"token", "type", "url", "source"}``,
signed: see :mod:`._signatures`) and answers GitHub's feedback: one
``{"token_hash", "token_type", "label"}`` per token. ``POST /report`` takes
``{"keys": [...]}`` from anyone who found a key.

Security model: an alert acts only with a valid signature (else 401, nothing happens); a
token is a known key only when its checksum holds and its digest matches the store's (a
made-up key costs no store access, a known id with another secret revokes nothing). The token
is never echoed, logged or audited: answers carry its SHA-256, events the key id and where it
was found. ``/report`` answers 202 with the same body whether or not any key existed (no
oracle), and is rate limited per client address (resolved with ``trusted_proxies``). A slow
or failing ``notify`` never blocks or changes an answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._client_ip import client_block, parse_networks, resolve_client_ip
from .._manager import KeyManager
from .._models import AuditEvent
from ..stores._errors import StoreUnavailable
from ._signatures import GITHUB_KEYS_URL, PublicKeys

__all__ = ["MAX_ALERT_BYTES", "MAX_ALERT_ITEMS", "MAX_REPORT_KEYS", "secret_scanning_app"]

MAX_ALERT_BYTES = 1024 * 1024
MAX_ALERT_ITEMS = 1000
MAX_REPORT_KEYS = 100
REPORTS_PER_MINUTE = 10
"""Leak reports accepted per client address (IPv6: per /64) per minute."""
SCANNING_ACTOR = "secret-scanning"
REPORT_ACTOR = "leak-report"
_RECEIVED = {"status": "received"}
_log = logging.getLogger("nowramp_auth.leaks")

Notify = Callable[[AuditEvent], Any]


class _TooLarge(Exception):
    pass


def secret_scanning_app(
    manager: KeyManager,
    *,
    public_keys: Mapping[str, str] | None = None,
    notify: Notify | None = None,
    trusted_proxies: Iterable[str] = (),
    keys_url: str = GITHUB_KEYS_URL,
) -> Starlette:
    """The ASGI app GitHub's secret scanning partner program posts alerts to.

    Parameters:
        manager: the :class:`~nowramp_auth.KeyManager` of the keys (its audit sinks get
            ``key.revoked`` and ``key.leaked``).
        public_keys: GitHub's signing keys, identifier to PEM; by default they are fetched
            from ``keys_url`` (GitHub's meta endpoint) and cached.
        notify: called with each ``key.leaked`` event (sync or async), e.g. to email the
            partner; its failures are logged and never block the answer.
        trusted_proxies: CIDRs of proxies in front of the app, for ``/report``'s per-client
            limit (as given to the ``Authenticator``).

    Example::

        app.mount("/security/github-secret-scanning", secret_scanning_app(manager))
    """
    if notify is not None and not callable(notify):
        raise TypeError("notify must be a callable taking the AuditEvent")
    if isinstance(trusted_proxies, str):
        raise TypeError("trusted_proxies must be a list of CIDRs, not one string")
    keys = PublicKeys(public_keys, url=keys_url)
    leaks = _Leaks(manager, notify, parse_networks(trusted_proxies))

    async def alert(request: Request) -> Response:
        try:
            body = await _body(request, MAX_ALERT_BYTES)
        except _TooLarge:
            return _answer({"error": "body over 1 MiB"}, 413)
        headers = request.headers
        identifier = headers.get("github-public-key-identifier")
        signature = headers.get("github-public-key-signature")
        if not await run_in_threadpool(keys.verify, identifier, signature, body):
            return _answer({"error": "missing or invalid signature"}, 401)
        items = _alert_items(body)
        if items is None:
            return _answer({"error": "expected a JSON array of at most 1,000 alerts"}, 400)
        try:
            labels = await run_in_threadpool(leaks.label_all, items)
        except StoreUnavailable:
            return _answer({"error": "key store unavailable; send again later"}, 503)
        return _answer(labels, 200)

    async def report(request: Request) -> Response:
        try:
            body = await _body(request, 64 * 1024)
        except _TooLarge:
            return _answer({"error": "body over 64 KiB"}, 413)
        tokens = _report_keys(body)
        if tokens is None:
            return _answer({"error": 'expected {"keys": [...]} with at most 100 keys'}, 400)
        peer = request.client.host if request.client else None
        client = resolve_client_ip(peer, request.headers.getlist("x-forwarded-for"), leaks.trusted)
        try:
            allowed = await run_in_threadpool(leaks.admit_report, client_block(client))
            if not allowed:
                return _answer({"error": "too many reports; try again in a minute"}, 429)
            await run_in_threadpool(leaks.revoke_reported, tokens)
        except StoreUnavailable:
            return _answer({"error": "key store unavailable; send again later"}, 503)
        return _answer(_RECEIVED, 202)

    routes = [Route("/", alert, methods=["POST"]), Route("/report", report, methods=["POST"])]
    app = Starlette(routes=routes)
    app.state.public_keys = keys
    return app


class _Leaks:
    """What the app does with tokens: label, revoke, audit, notify."""

    def __init__(self, manager: KeyManager, notify: Notify | None, trusted: Any) -> None:
        self.manager = manager
        self.notify = notify
        self.trusted = trusted
        self._reports: dict[str, list[float]] = {}  # stores without take_attempt
        self._lock = threading.Lock()
        self._notifiers: ThreadPoolExecutor | None = None

    def label_all(self, items: list[dict[str, Any]]) -> list[dict[str, str]]:
        """GitHub's feedback for each alert item, revoking the known keys."""
        scanning = self.manager.acting_as(SCANNING_ACTOR)
        answers = []
        for item in items:
            token = item["token"]
            record = self.manager.find_presented(token)
            if record is not None:
                _, event = scanning.revoke_leaked(
                    record.id, url=_text(item.get("url")), source=_text(item.get("source"))
                )
                self._notify(event)
            answers.append(
                {
                    "token_hash": hashlib.sha256(token.encode("utf-8", "replace")).hexdigest(),
                    "token_type": _text(item.get("type")) or "",
                    "label": "true_positive" if record is not None else "false_positive",
                }
            )
        return answers

    def revoke_reported(self, tokens: list[str]) -> None:
        """Revoke every known key of a report."""
        reporting = self.manager.acting_as(REPORT_ACTOR)
        for token in tokens:
            record = self.manager.find_presented(token)
            if record is not None:
                _, event = reporting.revoke_leaked(record.id, url=None, source="report")
                self._notify(event)

    def admit_report(self, block: str) -> bool:
        """One report from ``block`` (a client address or IPv6 /64), if it has room."""
        bucket = "leak_report_" + hashlib.sha256(block.encode()).hexdigest()[:24]
        take = getattr(self.manager.store, "take_attempt", None)
        if take is not None:
            return take(bucket, REPORTS_PER_MINUTE, 60.0) is not None
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._reports.get(bucket, []) if t > now - 60]
            if len(recent) >= REPORTS_PER_MINUTE:
                return False
            self._reports[bucket] = [*recent, now]
            return True

    def _notify(self, event: AuditEvent) -> None:
        # Handed to the app's few notify workers (a sync call, or an async one on an event
        # loop of the worker's own), so it never blocks or fails the answer.
        notify = self.notify
        if notify is None:
            return
        with self._lock:
            if self._notifiers is None:
                self._notifiers = ThreadPoolExecutor(4, thread_name_prefix="nowramp-notify")
            notifiers = self._notifiers
        notifiers.submit(_call_notify, notify, event)


def _call_notify(notify: Notify, event: AuditEvent) -> None:
    try:
        result = notify(event)
        if inspect.isawaitable(result):
            asyncio.run(_awaited(result))
    except Exception:
        _log.exception("notify failed for key.leaked of %s", event.key_id)


async def _awaited(result: Any) -> None:
    await result


async def _body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _alert_items(body: bytes) -> list[dict[str, Any]] | None:
    # GitHub's alert: a JSON array of objects, each with a string token.
    try:
        items = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(items, list) or len(items) > MAX_ALERT_ITEMS:
        return None
    if not all(isinstance(i, dict) and isinstance(i.get("token"), str) for i in items):
        return None
    return items


def _report_keys(body: bytes) -> list[str] | None:
    try:
        report = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    keys = report.get("keys") if isinstance(report, dict) else None
    if not isinstance(keys, list) or len(keys) > MAX_REPORT_KEYS:
        return None
    if not all(isinstance(k, str) for k in keys):
        return None
    return keys


def _text(value: object) -> str | None:
    return value[:2048] if isinstance(value, str) else None


def _answer(payload: object, status: int) -> Response:
    return JSONResponse(payload, status, headers={"Cache-Control": "no-store"})
