"""A silently dropped invalidation channel (no FIN, no RST) is noticed by the listener's
health check and replaced, with the cache flushed: revocations reach the instance within
seconds, not after the cache TTL, and within about a second once the channel is back."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from nowramp_auth import Authenticator, KeyManager, RedisKeyStore
from nowramp_auth.stores._redis_invalidation import HEALTH_INTERVAL, REPLY_DEADLINE
from tests.tcp_proxy import TcpProxy
from tests.waiting import seconds_until_refused

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
        manager = KeyManager(direct)
        auth = Authenticator(behind)
        first = manager.create(scopes=["quotes:read"])
        auth.authenticate(first.secret)
        assert behind.subscribed.wait(5)
        auth.authenticate(first.secret)  # cached now

        assert proxy.drop_silently(b"SUBSCRIBE") == 1
        manager.revoke(first.key.id)
        noticed = seconds_until_refused(auth, first.secret, 10)
        # Noticed by the ping that goes unanswered, not by the 30 s TTL.
        assert noticed < HEALTH_INTERVAL + REPLY_DEADLINE + 2.0, noticed
        assert behind.subscribed.wait(5)

        # The new channel delivers: the next revocation is seen within about a second.
        second = manager.create(scopes=["quotes:read"])
        auth.authenticate(second.secret)
        auth.authenticate(second.secret)
        manager.revoke(second.key.id)
        assert seconds_until_refused(auth, second.secret, 5) < 1.0
    finally:
        behind.close()
        direct.close()
        proxy.close()
