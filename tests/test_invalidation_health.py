"""A silently dropped invalidation channel (no FIN, no RST) is noticed by the listener's
health check and replaced, with the cache flushed: revocations reach the instance within
seconds, not after the cache TTL, and within about a second once the channel is back."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from nowramp_auth import Authenticator, KeyManager, RedisKeyStore
from nowramp_auth.stores._redis_invalidation import HEALTH_INTERVAL, REPLY_DEADLINE
from tests.tcp_proxy import TcpProxy
from tests.waiting import revocations_survive_a_silent_drop

pytestmark = pytest.mark.redis


def test_a_silently_dead_channel_is_replaced_within_seconds(redis_url: str, namespace: str):
    target = urlparse(redis_url)
    proxy = TcpProxy((target.hostname or "127.0.0.1", target.port or 6379))
    # The instance under test reaches Redis through the proxy; its cache would serve a
    # revoked key for 30 s if only the TTL bounded staleness.
    behind = RedisKeyStore.from_url(
        f"redis://127.0.0.1:{proxy.port}/0", namespace=namespace, cache_ttl=30
    )
    direct = RedisKeyStore.from_url(redis_url, namespace=namespace)
    try:
        # Noticed by the ping that goes unanswered, not by the 30 s TTL.
        revocations_survive_a_silent_drop(
            KeyManager(direct),
            Authenticator(behind),
            behind,
            lambda: proxy.drop_silently(b"SUBSCRIBE"),
            HEALTH_INTERVAL + REPLY_DEADLINE + 2.0,
        )
    finally:
        behind.close()
        direct.close()
        proxy.close()
