"""Metrics: exact counts after known traffic, through real apps, stores and exporters."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from nowramp_auth import (
    AuditEvent,
    Authenticator,
    AuthError,
    ErrorCode,
    KeyManager,
    MemoryAuditLog,
    MemoryKeyStore,
    RateLimit,
    RedisKeyStore,
)
from nowramp_auth._context import check_scopes
from nowramp_auth._request_counts import DURATION_BUCKETS, RequestCounts
from nowramp_auth.metrics import OpenTelemetryMetrics, PrometheusMetrics
from nowramp_auth.metrics._totals import Sources
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes
from nowramp_auth.testing import FrozenClock
from tests.conftest import mistype
from tests.redis_servers import free_port

Series = dict[tuple[str, ...], float]


def series(registry: CollectorRegistry, name: str, *labels: str) -> Series:
    """Every sample of ``name`` by its label values (in the order given)."""
    found: Series = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sample.labels[label] for label in labels)] = sample.value
    return found


def value(registry: CollectorRegistry, name: str) -> float:
    sample = registry.get_sample_value(name)
    assert sample is not None, name
    return sample


class FailingSink:
    """An audit sink that always raises (its events are dropped and counted)."""

    emit_never_blocks = True

    def emit(self, event: AuditEvent) -> None:
        raise OSError("disk full")


def partner_app(auth: Authenticator) -> Starlette:
    @require_scopes("quotes:read")
    async def quotes(request: Request) -> JSONResponse:
        return JSONResponse({"quotes": []})

    async def inline(request: Request) -> JSONResponse:
        # A check inside the handler: the middleware accepted the request first.
        error = check_scopes({"orders:write"})
        if error is not None:
            return JSONResponse(error.to_dict(), error.status_code)
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/quotes", quotes), Route("/inline", inline)])
    app.add_middleware(ApiKeyMiddleware, authenticator=auth)
    return app


@pytest.fixture
def traffic(clock: FrozenClock) -> Iterator[tuple[CollectorRegistry, dict[str, object]]]:
    """Known traffic through a Starlette app on the memory store: every refusal code the
    memory store can produce, sessions, a rate-limited key and two route-level refusals."""
    registry = CollectorRegistry()
    store = MemoryKeyStore()
    manager = KeyManager(store, clock=clock)
    log = MemoryAuditLog()
    auth = Authenticator(
        store, clock=clock, metrics=PrometheusMetrics(registry), audit=[log, FailingSink()]
    )
    client = TestClient(partner_app(auth))
    read = ["quotes:read"]
    live = manager.create(scopes=read, key_type="live", project_id="proj_1", name="live")
    test = manager.create(scopes=read, key_type="test", project_id="proj_2")
    other = manager.create(scopes=["orders:read"], key_type="test", project_id="proj_3")
    limited = manager.create(scopes=read, rate_limit=RateLimit(2, timedelta(seconds=60)))
    walled = manager.create(scopes=read, key_type="live", allowed_ips=["203.0.113.0/24"])
    revoked = manager.create(scopes=read, key_type="live", project_id="proj_4")
    manager.revoke(revoked.key.id)
    expiring = manager.create(scopes=read, key_type="live", expires_at=clock() + timedelta(hours=1))

    def get(path: str, key: str | None = None, bearer: str | None = None) -> int:
        headers = {"X-API-Key": key} if key is not None else {}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return client.get(path, headers=headers).status_code

    assert [get("/quotes", live.secret) for _ in range(3)] == [200] * 3
    assert [get("/quotes", test.secret) for _ in range(2)] == [200] * 2
    assert get("/quotes") == 401
    assert get("/quotes", "not-a-key") == 401
    assert get("/quotes", mistype(live.secret)) == 401  # bad checksum: type unknown
    assert get("/quotes", revoked.secret) == 401
    assert get("/quotes", other.secret) == 403  # the route's scope, in the middleware
    assert get("/inline", live.secret) == 403  # refused inside the handler, after acceptance
    assert get("/quotes", walled.secret) == 403
    assert [get("/quotes", limited.secret) for _ in range(3)] == [200, 200, 429]
    widget = {"X-API-Key": live.secret}
    created = client.post("/widget/sessions", headers=widget, json={"project_id": "proj_1"})
    assert created.status_code == 201
    token = created.json()["session_token"]
    bad_body = client.post("/widget/sessions", headers=widget, content=b"{not json")
    assert bad_body.status_code == 400
    assert get("/quotes", bearer=token) == 200
    assert get("/quotes", bearer="ramp_sess_" + "A" * 54) == 401
    clock.advance(hours=2)
    assert get("/quotes", expiring.secret) == 401
    assert get("/quotes", bearer=token) == 401
    secrets = [k.secret for k in (live, test, other, limited, walled, revoked, expiring)]
    ids = [k.key.id for k in (live, test, other, limited, walled, revoked, expiring)]
    yield (
        registry,
        {
            "auth": auth,
            "log": log,
            "secrets": [*secrets, token],
            "ids": [*ids, token[10:26]],  # and the session's public id
        },
    )


EXPECTED_REQUESTS = {
    ("ok", "live"): 5,  # 3 keys, the widget session's creation and one use
    ("ok", "test"): 4,  # 2 keys, 2 within the limit
    ("MISSING_API_KEY", "unknown"): 1,
    ("INVALID_API_KEY", "unknown"): 2,  # malformed, bad checksum
    ("INVALID_API_KEY", "live"): 1,  # revoked
    ("INSUFFICIENT_PERMISSIONS", "test"): 1,
    ("INSUFFICIENT_PERMISSIONS", "live"): 1,  # counted once, as the refusal, not as ok
    ("IP_NOT_ALLOWED", "live"): 1,
    ("RATE_LIMITED", "test"): 1,
    ("INVALID_REQUEST", "live"): 1,
    ("INVALID_SESSION_TOKEN", "unknown"): 1,
    ("API_KEY_EXPIRED", "live"): 1,
    ("SESSION_EXPIRED", "live"): 1,  # a session's key type is its key's
}


def test_each_request_counts_once_with_its_final_result(traffic):
    registry, _ = traffic
    requests = series(registry, "nowramp_auth_requests_total", "result", "key_type")
    assert requests == EXPECTED_REQUESTS


def test_the_histogram_times_every_request_once(traffic):
    registry, _ = traffic
    total = sum(EXPECTED_REQUESTS.values())
    buckets = series(registry, "nowramp_auth_authenticate_seconds_bucket", "le")
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    assert buckets[("+Inf",)] == total
    assert value(registry, "nowramp_auth_authenticate_seconds_count") == total
    counts = [buckets[(label,)] for label in [*(repr(b) for b in DURATION_BUCKETS), "+Inf"]]
    assert counts == sorted(counts)  # cumulative
    assert 0 < value(registry, "nowramp_auth_authenticate_seconds_sum") < total * 1.0


def test_dropped_audit_events_are_counted(traffic):
    registry, state = traffic
    delivered = len(state["log"].events)  # the failing sink was offered each of these
    assert delivered > 0
    assert value(registry, "nowramp_auth_audit_dropped_total") == delivered


def test_the_memory_store_reports_no_cache_and_no_store_errors(traffic):
    registry, _ = traffic
    assert series(registry, "nowramp_auth_cache_requests_total", "result") == {
        ("hit",): 0,
        ("miss",): 0,
    }
    assert series(registry, "nowramp_auth_store_errors_total", "operation") == {}
    assert value(registry, "nowramp_auth_rate_limit_calls_total") == 0


def test_the_exposition_names_no_key_secret_project_or_path(traffic):
    registry, state = traffic
    text = generate_latest(registry).decode()
    parsed = {family.name for family in text_string_to_metric_families(text)}  # valid text
    assert parsed == {
        "nowramp_auth_requests",
        "nowramp_auth_authenticate_seconds",
        "nowramp_auth_cache_requests",
        "nowramp_auth_store_errors",
        "nowramp_auth_invalidations",
        "nowramp_auth_pubsub_reconnects",
        "nowramp_auth_rate_limit_calls",
        "nowramp_auth_audit_dropped",
        "nowramp_auth_rate_limit_refusals",
    }
    forbidden = [*state["secrets"], *state["ids"], "proj_", "/quotes", "/inline", "/widget"]
    for needle in forbidden:
        assert needle not in text, needle
    # and no key id shape at all
    assert "key_" not in text.replace("key_type", "")


def test_counts_are_not_lost_across_threads():
    registry = CollectorRegistry()
    store = MemoryKeyStore()
    secret = KeyManager(store).create(scopes=["quotes:read"], key_type="live").secret
    auth = Authenticator(store, metrics=PrometheusMetrics(registry))
    auth.authenticate(secret)  # verified once: the rest take the fast path
    threads_n, per_thread = 8, 4000
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython will
    try:

        def worker() -> None:
            for _ in range(per_thread):
                auth.authenticate(secret)
                with contextlib.suppress(AuthError):
                    auth.authenticate("ramp_live_" + "x" * 54)

        threads = [threading.Thread(target=worker) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    requests = series(registry, "nowramp_auth_requests_total", "result", "key_type")
    assert requests == {
        ("ok", "live"): 1 + threads_n * per_thread,
        ("INVALID_API_KEY", "unknown"): threads_n * per_thread,
    }
    assert value(registry, "nowramp_auth_authenticate_seconds_count") == 1 + 2 * threads_n * (
        per_thread
    )


def test_a_counter_never_goes_down_between_acceptance_and_a_later_refusal():
    counts = RequestCounts()
    sources = Sources()

    class Source:
        store = None
        audit = type("Audit", (), {"sinks": (), "dropped": 0})()

        def __init__(self) -> None:
            self.counts = counts

        def store_counts(self) -> None:
            return None

        def audit_counters(self) -> list[object]:
            return [self.audit]

    sources.add(Source())  # type: ignore[arg-type]
    store = MemoryKeyStore()
    secret = KeyManager(store).create(scopes=["quotes:read"], key_type="live").secret
    principal = Authenticator(store).authenticate(secret)
    counts.accepted(principal, 0.0)
    assert sources.totals().requests == {("ok", "live"): 1}
    counts.recount(principal, AuthError(ErrorCode.INSUFFICIENT_PERMISSIONS))
    # a scrape right now: ok stays at what it reported, the refusal shows
    refused = ("INSUFFICIENT_PERMISSIONS", "live")
    assert sources.totals().requests == {("ok", "live"): 1, refused: 1}
    counts.accepted(principal, 0.0)  # the next accepted request: exact again
    assert sources.totals().requests == {("ok", "live"): 1, refused: 1}
    counts.accepted(principal, 0.0)
    assert sources.totals().requests == {("ok", "live"): 2, refused: 1}


def test_one_exporter_sums_several_authenticators_and_refuses_a_second_registration():
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    store = MemoryKeyStore()
    secret = KeyManager(store).create(scopes=["quotes:read"], key_type="test").secret
    for _ in range(2):
        Authenticator(store, metrics=metrics).authenticate(secret)
    assert series(registry, "nowramp_auth_requests_total", "result", "key_type") == {
        ("ok", "test"): 2
    }
    with pytest.raises(ValueError):
        PrometheusMetrics(registry)
    with pytest.raises(TypeError, match="metrics must be an exporter"):
        Authenticator(store, metrics=registry)  # type: ignore[arg-type]


# -- Redis: cache, rate-limit calls, store errors ------------------------------------------------


@pytest.mark.redis
def test_redis_cache_hits_misses_rate_limit_calls_and_redis_down(redis_url, namespace):
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    store = RedisKeyStore.from_url(redis_url, namespace=namespace, invalidation=False)
    setup = RedisKeyStore.from_url(redis_url, namespace=namespace, invalidation=False)
    down = RedisKeyStore.from_url(
        f"redis://127.0.0.1:{free_port()}", namespace=namespace, connect_timeout=0.2
    )
    try:
        manager = KeyManager(setup)  # so that the store's cache starts empty and uncounted
        key = manager.create(scopes=["quotes:read"], key_type="live", project_id="proj_9")
        limited = manager.create(
            scopes=["quotes:read"], rate_limit=RateLimit(2, timedelta(seconds=60))
        )
        unknown = manager.create(scopes=["quotes:read"], key_type="live")
        manager.revoke(unknown.key.id)
        auth = Authenticator(store, metrics=metrics)
        for _ in range(4):  # one miss (Redis), then three fast-path hits
            auth.authenticate(key.secret)
        for _ in range(2):  # revoked: a miss, then a cache hit, refused both times
            with pytest.raises(AuthError):
                auth.authenticate(unknown.secret)
        statuses = []
        for _ in range(3):  # a miss and a script call, then two hits and two script calls
            try:
                auth.authenticate(limited.secret)
                statuses.append("ok")
            except AuthError as error:
                statuses.append(error.code.value)
        assert statuses == ["ok", "ok", "RATE_LIMITED"]
        # the same through asyncio: the fast path and the shared pipeline
        assert asyncio.run(auth.authenticate_async(key.secret)).key_id == key.key.id
        with pytest.raises(AuthError) as refused:
            asyncio.run(auth.authenticate_async(limited.secret))
        assert refused.value.code.value == "RATE_LIMITED"

        failing = Authenticator(down, metrics=metrics)  # Redis down
        for _ in range(2):
            with pytest.raises(AuthError) as unavailable:
                failing.authenticate(key.secret)
            assert unavailable.value.code.value == "AUTH_UNAVAILABLE"
            # the key parsed: its (public) id for the audit log; no chained client error
            assert unavailable.value.key_id == key.key.id
            assert unavailable.value.__context__ is None
        with pytest.raises(AuthError):
            asyncio.run(failing.authenticate_async(limited.secret))

        requests = series(registry, "nowramp_auth_requests_total", "result", "key_type")
        assert requests == {
            ("ok", "live"): 5,
            ("ok", "test"): 2,
            ("INVALID_API_KEY", "live"): 2,
            ("RATE_LIMITED", "test"): 2,
            ("AUTH_UNAVAILABLE", "live"): 2,
            ("AUTH_UNAVAILABLE", "test"): 1,
        }
        cache = series(registry, "nowramp_auth_cache_requests_total", "result")
        # hits: 3 + 1 (key, fast path), 1 (revoked, negative cache), 2 + 1 (limited, fast
        # path); misses: key, revoked, limited, and the three lookups on the Redis that is down
        assert cache == {("hit",): 8, ("miss",): 6}
        assert value(registry, "nowramp_auth_rate_limit_calls_total") == 4
        # each failed lookup counts once, though a read is tried twice
        errors = series(registry, "nowramp_auth_store_errors_total", "operation")
        assert errors == {("get_key",): 3}
    finally:
        for each in (store, setup, down):
            each.close()


@pytest.mark.redis
def test_a_rate_limit_pipeline_that_fails_counts_each_caller_once(redis_server, namespace):
    registry = CollectorRegistry()
    store = RedisKeyStore.from_url(
        redis_server.url, namespace=namespace, invalidation=False, socket_timeout=0.3
    )
    try:
        limited = KeyManager(store).create(
            scopes=["quotes:read"], rate_limit=RateLimit(100, timedelta(seconds=60))
        )
        auth = Authenticator(store, metrics=PrometheusMetrics(registry))

        async def burst() -> list[str]:
            await auth.authenticate_async(limited.secret)  # verified: the fast path from now
            redis_server.kill()
            results = await asyncio.gather(
                *(auth.authenticate_async(limited.secret) for _ in range(10)),
                return_exceptions=True,
            )
            return [r.code.value if isinstance(r, AuthError) else "ok" for r in results]

        assert asyncio.run(burst()) == ["AUTH_UNAVAILABLE"] * 10
        errors = series(registry, "nowramp_auth_store_errors_total", "operation")
        assert errors == {("hit_rate_limit",): 10}
        assert series(registry, "nowramp_auth_requests_total", "result", "key_type") == {
            ("ok", "test"): 1,
            ("AUTH_UNAVAILABLE", "test"): 10,
        }
        # one merged script call for the first request, one for the burst of ten
        assert value(registry, "nowramp_auth_rate_limit_calls_total") == 2
    finally:
        store.close()


@pytest.mark.redis
def test_invalidations_and_pubsub_reconnects_are_counted(redis_url, namespace):
    registry = CollectorRegistry()
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    other = RedisKeyStore.from_url(redis_url, namespace=namespace, invalidation=False)
    try:
        Authenticator(store, metrics=PrometheusMetrics(registry))
        manager = KeyManager(other)
        issued = manager.create(scopes=["quotes:read"])
        store.get_key(issued.key.id)  # starts the listener
        assert store.subscribed.wait(10)
        before = value(registry, "nowramp_auth_invalidations_total")
        manager.revoke(issued.key.id)
        manager.update(issued.key.id, name="renamed")
        _wait(lambda: value(registry, "nowramp_auth_invalidations_total") >= before + 2)
        assert value(registry, "nowramp_auth_invalidations_total") == before + 2
        assert value(registry, "nowramp_auth_pubsub_reconnects_total") == 0
        killed = other._client().client_kill_filter(_type="pubsub")
        assert killed >= 1
        _wait(lambda: value(registry, "nowramp_auth_pubsub_reconnects_total") == 1)
        assert store.subscribed.wait(10)
    finally:
        store.close()
        other.close()


def _wait(condition: object, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- OpenTelemetry --------------------------------------------------------------------------


def test_opentelemetry_instruments_and_span_attributes():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    exporter, tracer = _recording_tracer()
    store = MemoryKeyStore()
    manager = KeyManager(store)
    issued = manager.create(scopes=["quotes:read"], key_type="live", project_id="proj_1")
    auth = Authenticator(
        store, metrics=OpenTelemetryMetrics(MeterProvider(metric_readers=[reader]))
    )
    session = auth.create_session(issued.secret, project_id="proj_1")

    def traced(name: str, call: object) -> None:
        # The attributes go on the current span: the server span in a real deployment.
        from opentelemetry import trace

        span = tracer.start_span(name)
        with trace.use_span(span, end_on_exit=True), contextlib.suppress(AuthError):
            call()  # type: ignore[operator]

    traced("first", lambda: auth.authenticate(issued.secret))
    traced("fast", lambda: auth.authenticate(issued.secret))
    traced("malformed", lambda: auth.authenticate("not-a-key"))
    traced("missing", lambda: auth.authenticate_request([], []))
    traced("session", lambda: auth.authenticate_session(session.token))
    traced("scopes", lambda: auth.authenticate(issued.secret, required_scopes=["orders:read"]))
    auth.authenticate(issued.secret)  # no span: counted, nothing recorded

    spans = _finished(exporter)
    key_id = issued.key.id
    assert spans == {
        "first": _span("ok", "live", "api_key", key_id),
        "fast": _span("ok", "live", "api_key", key_id),
        "malformed": _span("INVALID_API_KEY", "unknown", "api_key"),
        "missing": _span("MISSING_API_KEY", "unknown"),
        "session": _span("ok", "live", "session", key_id),
        "scopes": _span("INSUFFICIENT_PERMISSIONS", "live", "api_key", key_id),
    }
    points = _points(reader)
    assert points["nowramp_auth.requests"] == {
        (("key_type", "live"), ("result", "ok")): 5,  # the session's creation counts too
        (("key_type", "unknown"), ("result", "INVALID_API_KEY")): 1,
        (("key_type", "unknown"), ("result", "MISSING_API_KEY")): 1,
        (("key_type", "live"), ("result", "INSUFFICIENT_PERMISSIONS")): 1,
    }
    assert points["nowramp_auth.authenticate.duration.count"] == {(): 8}
    assert points["nowramp_auth.authenticate.duration.bucket"][(("le", "+Inf"),)] == 8
    assert points["nowramp_auth.audit.dropped"] == {(): 0}
    for name, by_attributes in points.items():  # no key id, project or path in any metric
        for attributes in by_attributes:
            assert all(key_id not in v and "proj_" not in v for _, v in attributes), name


def _recording_tracer() -> tuple[Any, Any]:
    """An in-memory span exporter and a tracer whose spans record and end up in it."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider.get_tracer("test")


def _finished(exporter: Any) -> dict[str, dict[str, object]]:
    return {span.name: dict(span.attributes or {}) for span in exporter.get_finished_spans()}


def _span(result: str, key_type: str, credential: str | None = None, key_id: str | None = None):
    attributes = {"nowramp_auth.result": result, "nowramp_auth.key_type": key_type}
    if credential is not None:
        attributes["nowramp_auth.credential"] = credential
    if key_id is not None:
        attributes["nowramp_auth.key_id"] = key_id
    return attributes


def _points(reader) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = {
                    tuple(sorted((point.attributes or {}).items())): point.value
                    for point in metric.data.data_points
                }
    return found


# -- real servers -----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_a_real_server_exports_exact_counts_at_metrics(server, redis_url, namespace):
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from tests.servers import serve, server_command

    setup = RedisKeyStore.from_url(redis_url, namespace=namespace)
    manager = KeyManager(setup)
    reader = manager.create(scopes=["quotes:read"], key_type="live", project_id="proj_7")
    writer = manager.create(scopes=["orders:write"], key_type="test")
    env = {"NOWRAMP_TEST_REDIS_URL": redis_url, "NOWRAMP_TEST_NAMESPACE": namespace}
    if server == "uvicorn":
        command = server_command(server, asgi_app="tests.metrics_server_app:asgi_app")
    else:  # one worker (each process counts for itself), four threads
        command = server_command(server, wsgi_app="tests.metrics_server_app:wsgi_app")
        command[command.index("--workers") + 1] = "1"
    try:
        with serve(command, env) as base, httpx.Client(base_url=base) as client:

            def call(key: str | None) -> int:
                headers = {"X-API-Key": key} if key else {}
                return httpx.get(base + "/quotes", headers=headers, timeout=10).status_code

            keys = [reader.secret] * 120 + [writer.secret] * 30 + [None] * 20 + ["bad"] * 10
            with ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(call, keys))
            assert statuses.count(200) == 120 and statuses.count(403) == 30
            text = client.get("/metrics").text
    finally:
        setup.close()
    found = {
        tuple(line.split("{", 1)[1].split("}")[0].split(",")): float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nowramp_auth_requests_total{")
    }
    assert found == {
        ('key_type="live"', 'result="ok"'): 120,
        ('key_type="test"', 'result="INSUFFICIENT_PERMISSIONS"'): 30,
        ('key_type="unknown"', 'result="MISSING_API_KEY"'): 20,
        ('key_type="unknown"', 'result="INVALID_API_KEY"'): 10,
    }
    assert "nowramp_auth_authenticate_seconds_count 180.0" in text
    for needle in (reader.secret, reader.key.id, writer.key.id, "proj_7", "/quotes"):
        assert needle not in text


# -- invariants under arbitrary input ---------------------------------------------------------

_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    requests=st.lists(
        st.one_of(
            st.just(("valid", "")),
            st.just(("none", "")),
            st.tuples(st.just("key"), _HEADER_TEXT),
            st.tuples(st.just("bearer"), _HEADER_TEXT),
            st.tuples(st.just("prefixed"), _HEADER_TEXT),
        ),
        max_size=12,
    )
)
def test_any_request_counts_exactly_once_in_fixed_label_sets(requests):
    registry = CollectorRegistry()
    store = MemoryKeyStore()
    valid = KeyManager(store).create(scopes=["quotes:read"], key_type="live", project_id="p9")
    client = TestClient(partner_app(Authenticator(store, metrics=PrometheusMetrics(registry))))
    sent: list[str] = []
    for kind, text in requests:
        headers = {}
        if kind == "valid":
            headers["X-API-Key"] = valid.secret
        elif kind == "key":
            headers["X-API-Key"] = text
        elif kind == "bearer":
            headers["Authorization"] = "Bearer " + text
        elif kind == "prefixed":
            headers["X-API-Key"] = "ramp_test_" + text
        sent += headers.values()
        assert client.get("/quotes", headers=headers).status_code < 500
    requests_total = series(registry, "nowramp_auth_requests_total", "result", "key_type")
    assert sum(requests_total.values()) == len(requests)
    assert value(registry, "nowramp_auth_authenticate_seconds_count") == len(requests)
    results = {"ok", *(code.value for code in ErrorCode)}
    assert all(r in results and k in ("live", "test", "unknown") for r, k in requests_total)
    text = generate_latest(registry).decode()
    assert valid.key.id not in text and "p9" not in text
    for header in sent:
        if len(header) >= 16:  # long enough not to match metric names by chance
            assert header not in text, header


def test_span_attributes_through_the_starlette_adapter():
    # As under OpenTelemetry's ASGI instrumentation: a server span current around the app.
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider

    exporter, tracer = _recording_tracer()
    store = MemoryKeyStore()
    issued = KeyManager(store).create(scopes=["quotes:read"], key_type="test")
    auth = Authenticator(store, metrics=OpenTelemetryMetrics(MeterProvider()))
    inner = partner_app(auth)

    async def traced(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await inner(scope, receive, send)
        name = f"{scope['path']} {dict(scope['headers']).get(b'x-case', b'').decode()}"
        with trace.use_span(tracer.start_span(name), end_on_exit=True):
            await inner(scope, receive, send)

    client = TestClient(traced)
    for case, key in (("general", issued.secret), ("fast", issued.secret), ("typo", "x")):
        client.get("/quotes", headers={"X-API-Key": key, "X-Case": case})
    client.get("/inline", headers={"X-API-Key": issued.secret, "X-Case": "inline"})
    spans = _finished(exporter)
    key_id = issued.key.id
    assert spans == {
        "/quotes general": _span("ok", "test", "api_key", key_id),
        "/quotes fast": _span("ok", "test", "api_key", key_id),
        "/quotes typo": _span("INVALID_API_KEY", "unknown", "api_key"),
        # accepted, then refused inside the handler: the span ends with the refusal
        "/inline inline": _span("INSUFFICIENT_PERMISSIONS", "test", "api_key", key_id),
    }


@pytest.mark.redis
def test_counts_stay_exact_under_a_burst_past_the_pool(redis_url, namespace):
    # 600 requests at once on asyncio against a pool of 4 connections: cold cache, one
    # rate-limited key; every request counted once, with its own answer.
    registry = CollectorRegistry()
    store = RedisKeyStore.from_url(
        redis_url, namespace=namespace, max_connections=4, invalidation=False
    )
    setup = RedisKeyStore.from_url(redis_url, namespace=namespace, invalidation=False)
    try:
        manager = KeyManager(setup)
        limited = manager.create(
            scopes=["quotes:read"], rate_limit=RateLimit(250, timedelta(seconds=60))
        )
        plain = manager.create(scopes=["quotes:read"], key_type="live")
        auth = Authenticator(store, metrics=PrometheusMetrics(registry))

        async def burst() -> list[str]:
            calls = [auth.authenticate_async(limited.secret) for _ in range(400)]
            calls += [auth.authenticate_async(plain.secret) for _ in range(200)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            return [r.code.value if isinstance(r, AuthError) else "ok" for r in results]

        answers = asyncio.run(burst())
        assert answers.count("RATE_LIMITED") == 150 and answers.count("ok") == 450
        requests = series(registry, "nowramp_auth_requests_total", "result", "key_type")
        assert requests == {
            ("ok", "test"): 250,
            ("RATE_LIMITED", "test"): 150,
            ("ok", "live"): 200,
        }
        assert value(registry, "nowramp_auth_authenticate_seconds_count") == 600
        assert series(registry, "nowramp_auth_store_errors_total", "operation") == {}
        cache = series(registry, "nowramp_auth_cache_requests_total", "result")
        assert cache[("hit",)] + cache[("miss",)] >= 600  # one lookup each, at least
        assert 1 <= value(registry, "nowramp_auth_rate_limit_calls_total") < 400  # merged
    finally:
        store.close()
        setup.close()
