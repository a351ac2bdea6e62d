"""Which kind of budget refused a request (a key's own limit, its project's budget, its
credits): on the refused status (``RateLimitStatus.refused_by``) from every store, sync and
async, and as the ``budget`` label of ``nowramp_auth_rate_limit_refusals_total`` (Prometheus)
and ``nowramp_auth.rate_limit.refusals`` (OpenTelemetry)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from nowramp_auth import Authenticator, AuthError, Credits, KeyManager, RateLimit
from nowramp_auth.metrics import OpenTelemetryMetrics, PrometheusMetrics
from nowramp_auth.stores import KeyStore
from tests.conftest import make_store

HOUR = timedelta(hours=1)


def _keys(store: KeyStore) -> tuple[str, str, str]:
    """Three keys, each refused on its second or fourth request by another kind of budget:
    its own limit (1 per hour), its project's budget (3 per hour, the first key's request
    counted in it), its credits (1)."""
    manager = KeyManager(store)
    manager.set_project_limits("p1", [RateLimit(3, HOUR, name="plan")])
    own = manager.create(
        scopes=["quotes:read"], project_id="p1", rate_limit=RateLimit(1, HOUR), credits=Credits(50)
    )
    shared = manager.create(scopes=["quotes:read"], project_id="p1", credits=Credits(50))
    trial = manager.create(scopes=["quotes:read"], project_id="p2", credits=Credits(1))
    return own.secret, shared.secret, trial.secret


def _sync(auth: Authenticator, secret: str) -> tuple[str, str | None]:
    try:
        status = auth.authenticate(secret).rate_limit
        assert status is not None and status.refused_by is None
        return "ok", None
    except AuthError as error:
        assert error.rate_limit is not None
        return error.code.value, error.rate_limit.refused_by


def _async(auth: Authenticator, secret: str) -> tuple[str, str | None]:
    async def one() -> tuple[str, str | None]:
        try:
            await auth.authenticate_async(secret)
            return "ok", None
        except AuthError as error:
            assert error.rate_limit is not None
            return error.code.value, error.rate_limit.refused_by

    return asyncio.run(one())


EXPECTED = {
    "own": [("ok", None), ("RATE_LIMITED", "key")],
    "shared": [("ok", None), ("ok", None), ("RATE_LIMITED", "project")],
    "trial": [("ok", None), ("CREDITS_EXHAUSTED", "credits")],
}


@pytest.mark.parametrize("call", [_sync, _async], ids=["sync", "async"])
@pytest.mark.parametrize("kind", ["memory", "redis", "cluster", "postgres"])
def test_every_store_says_which_kind_of_budget_refused(
    kind: str, call, request: pytest.FixtureRequest, namespace: str
):
    store = make_store(kind, request, namespace)
    own, shared, trial = _keys(store)
    registry = CollectorRegistry()
    auth = Authenticator(store, metrics=PrometheusMetrics(registry))
    seen = {
        "own": [call(auth, own) for _ in range(2)],
        "shared": [call(auth, shared) for _ in range(3)],
        "trial": [call(auth, trial) for _ in range(2)],
    }
    assert seen == EXPECTED
    text = generate_latest(registry).decode()
    for budget in ("key", "project", "credits"):
        assert f'nowramp_auth_rate_limit_refusals_total{{budget="{budget}"}} 1.0' in text
    # The existing series keeps its labels: the refusals count under their codes.
    assert 'nowramp_auth_requests_total{key_type="test",result="RATE_LIMITED"} 2.0' in text
    assert 'nowramp_auth_requests_total{key_type="test",result="CREDITS_EXHAUSTED"} 1.0' in text


def test_a_key_with_one_limit_is_refused_by_its_own_and_opentelemetry_counts_it():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from nowramp_auth import MemoryKeyStore

    reader = InMemoryMetricReader()
    store = MemoryKeyStore()
    secret = KeyManager(store).create(scopes=["quotes:read"], rate_limit=RateLimit(1, HOUR)).secret
    auth = Authenticator(
        store, metrics=OpenTelemetryMetrics(MeterProvider(metric_readers=[reader]))
    )
    assert [_sync(auth, secret) for _ in range(3)] == [("ok", None)] + [("RATE_LIMITED", "key")] * 2
    points = {
        metric.name: {
            tuple(sorted((point.attributes or {}).items())): point.value
            for point in metric.data.data_points
        }
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert points["nowramp_auth.rate_limit.refusals"] == {
        (("budget", "key"),): 2,
        (("budget", "project"),): 0,
        (("budget", "credits"),): 0,
    }
