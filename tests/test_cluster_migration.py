"""A rate-limited key whose slot is migrating between Redis Cluster nodes: the limiter script
meets TRYAGAIN (its keys are split between the nodes) and ASK; both say the script did not
run, so the client follows them as the cluster protocol intends until the migration ends,
and no request is answered 503 or counted twice."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta

import pytest
import redis
import redis.cluster

from nowramp_auth import Authenticator, AuthError, ErrorCode, KeyManager, RateLimit, RedisKeyStore

pytestmark = [pytest.mark.redis, pytest.mark.slow]
LIMIT = 40


def migrate_slot_slowly(cluster_url: str, key: str, hold: float) -> threading.Thread:
    """Start moving ``key``'s slot to another master: MIGRATING/IMPORTING at once, the keys
    and the ownership ``hold`` seconds later (in a thread)."""
    cluster = redis.cluster.RedisCluster.from_url(cluster_url, decode_responses=True)
    slot = cluster.keyslot(key)
    source_node = cluster.nodes_manager.get_node_from_slot(slot)
    masters = cluster.get_primaries()
    target_node = next(n for n in masters if n.name != source_node.name)
    source = redis.Redis(host=source_node.host, port=source_node.port, decode_responses=True)
    target = redis.Redis(host=target_node.host, port=target_node.port, decode_responses=True)
    source_id, target_id = (
        source.execute_command("CLUSTER MYID"),
        target.execute_command("CLUSTER MYID"),
    )
    target.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)

    def finish() -> None:
        time.sleep(hold)
        keys = source.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
        if keys:
            source.execute_command(
                "MIGRATE", target_node.host, target_node.port, "", 0, 5000, "KEYS", *keys
            )
        for node in masters:
            client = redis.Redis(host=node.host, port=node.port)
            client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
            client.close()
        cluster.close()

    thread = threading.Thread(target=finish, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("caller", ["sync", "async"])
def test_a_migrating_slot_is_followed_not_refused(cluster_url: str, namespace: str, caller: str):
    store = RedisKeyStore.from_url(cluster_url, cluster=True, namespace=namespace)
    try:
        manager = KeyManager(store)
        issued = manager.create(
            scopes=["quotes:read"], rate_limit=RateLimit(LIMIT, timedelta(hours=1))
        )
        auth = Authenticator(store)
        auth.authenticate(issued.secret)  # the log key now exists on the slot's owner
        moving = migrate_slot_slowly(cluster_url, store.names.rate_log(issued.key.lineage), 0.8)
        outcomes: list[str] = []

        def one() -> None:
            try:
                auth.authenticate(issued.secret)
                outcomes.append("ok")
            except AuthError as error:
                outcomes.append(error.code.value)

        async def one_async() -> str:
            try:
                await auth.authenticate_async(issued.secret)
                return "ok"
            except AuthError as error:
                return error.code.value

        start = time.monotonic()
        if caller == "sync":
            while len(outcomes) < 2 * LIMIT:
                one()
        else:

            async def burst() -> list[str]:
                return await asyncio.gather(*(one_async() for _ in range(2 * LIMIT)))

            outcomes = asyncio.run(burst())
        moving.join(10)
        assert time.monotonic() - start >= 0.5 or outcomes  # the calls met the migration
        assert ErrorCode.AUTH_UNAVAILABLE.value not in outcomes, outcomes
        assert outcomes.count("ok") == LIMIT - 1  # one was spent before the migration
        assert outcomes.count("RATE_LIMITED") == 2 * LIMIT - (LIMIT - 1)
    finally:
        store.close()
