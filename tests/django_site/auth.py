"""The authenticator ``settings.NOWRAMP_AUTH`` names: on the Redis the test process shares
(``NOWRAMP_TEST_REDIS_URL``, in server processes), else on an in-memory store."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry

from nowramp_auth import Authenticator, KeyManager, KeyStore, MemoryKeyStore, RedisKeyStore
from nowramp_auth.metrics import PrometheusMetrics

store: KeyStore
if "NOWRAMP_TEST_REDIS_URL" in os.environ:
    store = RedisKeyStore.from_url(
        os.environ["NOWRAMP_TEST_REDIS_URL"], namespace=os.environ["NOWRAMP_TEST_NAMESPACE"]
    )
else:
    store = MemoryKeyStore()
manager = KeyManager(store)
authenticator = Authenticator(store)

metrics_registry = CollectorRegistry()
metered = Authenticator(store, metrics=PrometheusMetrics(metrics_registry))
"""The same store with metrics (``NOWRAMP_AUTH["AUTHENTICATOR"]`` in the metrics test)."""
