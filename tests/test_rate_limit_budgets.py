"""Rate-limit budgets: one per key lineage (rotation and updates keep it), exact across
processes and concurrency, bounded in memory above 1,000 requests per window, and never
lenient (the bounded structure may refuse early, never accept late)."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowramp_auth import Authenticator, AuthError, ErrorCode, KeyManager, KeyStore, RateLimit
from nowramp_auth.stores._sliding_log import SUB_WINDOWS, RateBudget, SubWindowCounts
from tests.conftest import make_store
from tests.redis_servers import RedisServer

ROOT = Path(__file__).resolve().parent.parent
MINUTE = timedelta(minutes=1)


def accepted(auth: Authenticator, secret: str, attempts: int) -> int:
    count = 0
    for _ in range(attempts):
        try:
            auth.authenticate(secret)
            count += 1
        except AuthError as error:
            assert error.code is ErrorCode.RATE_LIMITED
    return count


def test_rotation_keeps_one_budget_per_lineage(any_store: KeyStore):
    manager, auth = KeyManager(any_store), Authenticator(any_store)
    old = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(3, MINUTE))
    assert accepted(auth, old.secret, 2) == 2
    new = manager.rotate(old.key.id)
    assert accepted(auth, new.secret, 5) == 1  # the successor shares what is left
    assert accepted(auth, old.secret, 5) == 0  # and so does the old key in its grace
    newer = manager.rotate(new.key.id)
    assert accepted(auth, newer.secret, 3) == 0


def test_updates_keep_the_budget(any_store: KeyStore):
    manager, auth = KeyManager(any_store), Authenticator(any_store)
    issued = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(3, MINUTE))
    assert accepted(auth, issued.secret, 2) == 2
    manager.update(issued.key.id, rate_limit=RateLimit(3, MINUTE))  # re-applied
    assert accepted(auth, issued.secret, 5) == 1
    manager.update(issued.key.id, rate_limit=RateLimit(5, MINUTE))  # raised
    assert accepted(auth, issued.secret, 5) == 2


def test_large_limits_switch_structure_and_keep_the_budget(any_store: KeyStore):
    manager, auth = KeyManager(any_store), Authenticator(any_store)
    issued = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(600, MINUTE))
    assert accepted(auth, issued.secret, 500) == 500
    # Above 1,000 per window the counts move into sub-windows, every one kept.
    manager.update(issued.key.id, rate_limit=RateLimit(1_100, MINUTE))
    assert accepted(auth, issued.secret, 700) == 600
    # Back under 1,000: the newest requests come back as a log; the lower limit refuses.
    manager.update(issued.key.id, rate_limit=RateLimit(900, MINUTE))
    assert accepted(auth, issued.secret, 10) == 0


@pytest.mark.redis
def test_bounded_memory_for_a_huge_limit(request: pytest.FixtureRequest):
    store = make_store("redis", request, "t" + uuid.uuid4().hex[:12])
    manager = KeyManager(store)
    limit = RateLimit(1_000_000, timedelta(hours=1))
    issued = manager.create(scopes=["quotes:read"], rate_limit=limit)
    for _ in range(3_000):
        store.hit_rate_limit(issued.key.lineage, limit, datetime.now(UTC))
    client = store._client()  # type: ignore[attr-defined]
    names = store.names  # type: ignore[attr-defined]
    assert client.exists(names.rate_log(issued.key.lineage)) == 0
    used = client.memory_usage(names.rate_counts(issued.key.lineage))
    assert used < 8_192, used  # at most SUB_WINDOWS + 1 small fields, whatever the traffic


@given(
    limit=st.integers(1, 12),
    gaps=st.lists(st.integers(0, 700), min_size=1, max_size=120),
)
def test_sub_window_counts_never_accept_late(limit: int, gaps: list[int]):
    window = 1_000
    width = -(-window // SUB_WINDOWS)
    counts = SubWindowCounts(width)
    now = 0
    accepted_at: list[int] = []
    for gap in gaps:
        now += gap
        status = counts.hit(now, limit)
        if status.allowed:
            accepted_at.append(now)
            # Never more than `limit` in any window of one window's length.
            assert sum(1 for t in accepted_at if t > now - window) <= limit
        else:
            # Refused at most one sub-window early: the window stretched by one sub-window
            # already holds `limit` accepted requests.
            assert sum(1 for t in accepted_at if t > now - window - width) >= limit


@given(
    limits=st.lists(st.sampled_from([2, 5, 1_001, 1_500]), min_size=1, max_size=6),
    gaps=st.lists(st.integers(0, 30_000), min_size=1, max_size=40),
)
def test_limit_changes_never_accept_more_than_the_lower_limit(limits: list[int], gaps: list[int]):
    budget = RateBudget()
    window = 60_000
    now = 0
    accepted_at: list[int] = []
    for index, gap in enumerate(gaps):
        now += gap
        requests = limits[index % len(limits)]
        if budget.hit(now, requests, window).allowed:
            accepted_at.append(now)
            assert sum(1 for t in accepted_at if t > now - window) <= max(limits)


EXACTNESS_WORKER = """
import asyncio, sys, threading
from nowramp_auth import Authenticator, AuthError, RedisKeyStore
url, cluster, namespace, secret, mode, attempts = sys.argv[1:7]
store = RedisKeyStore.from_url(url, cluster=cluster == "1", namespace=namespace,
                               max_connections=4)
auth = Authenticator(store)
ok = 0
lock = threading.Lock()
def one():
    global ok
    try:
        auth.authenticate(secret)
    except AuthError as error:
        assert error.code.value == "RATE_LIMITED", error.code
        return
    with lock:
        ok += 1
async def burst():
    async def one_async():
        try:
            await auth.authenticate_async(secret)
            return 1
        except AuthError as error:
            assert error.code.value == "RATE_LIMITED", error.code
            return 0
    return sum(await asyncio.gather(*[one_async() for _ in range(int(attempts))]))
if mode == "async":
    ok = asyncio.run(burst())
else:
    threads = [threading.Thread(target=one) for _ in range(int(attempts))]
    for t in threads: t.start()
    for t in threads: t.join()
store.close()
print(ok)
"""


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_exact_across_processes_under_load(kind: str, request: pytest.FixtureRequest):
    namespace = "t" + uuid.uuid4().hex[:12]
    url = request.getfixturevalue("redis_url" if kind == "redis" else "cluster_url")
    store = make_store(kind, request, namespace)
    limit = 300
    issued = KeyManager(store).create(
        scopes=["quotes:read"], rate_limit=RateLimit(limit, timedelta(hours=1))
    )
    cluster = "1" if kind == "cluster" else "0"
    modes = ["async", "async", "async", "threads"]
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                EXACTNESS_WORKER,
                url,
                cluster,
                namespace,
                issued.secret,
                mode,
                "200" if mode == "async" else "120",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in modes
    ]
    totals = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        totals.append(int(out.strip()))
    assert sum(totals) == limit, totals  # 720 attempts, exactly the limit accepted


def test_memory_store_budget_is_bounded_above_the_exact_size():
    budget = RateBudget()
    for now in range(0, 4_000_000, 200):  # 20,000 requests over more than an hour
        assert budget.hit(now, 1_000_000, 3_600_000).allowed
    assert isinstance(budget.state, SubWindowCounts)
    assert len(budget.state.counts) <= SUB_WINDOWS + 1


@pytest.mark.redis
def test_eviction_policy_warning_is_logged_once(tmp_path, caplog: pytest.LogCaptureFixture):
    from nowramp_auth import RedisKeyStore
    from tests.conftest import _need_redis

    _need_redis()
    server = RedisServer(tmp_path / "evicting", extra=["--maxmemory-policy", "volatile-lru"])
    server.start()
    try:
        with caplog.at_level(logging.WARNING, logger="nowramp_auth.redis"):
            store = RedisKeyStore.from_url(server.url)
            try:
                KeyManager(store).create(scopes=["quotes:read"])
                store.get_key("key_ABCDabcdefghijkl")
                store.list_keys()
            finally:
                store.close()
        warnings = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        assert len(warnings) == 1
        assert "volatile-lru" in warnings[0].getMessage()
        assert "noeviction" in warnings[0].getMessage()
    finally:
        server.stop()


@pytest.mark.redis
def test_no_eviction_warning_under_noeviction(redis_url: str, caplog: pytest.LogCaptureFixture):
    from nowramp_auth import RedisKeyStore

    with caplog.at_level(logging.WARNING, logger="nowramp_auth.redis"):
        store = RedisKeyStore.from_url(redis_url, namespace="t" + uuid.uuid4().hex[:12])
        try:
            store.get_key("key_ABCDabcdefghijkl")
        finally:
            store.close()
    assert "maxmemory-policy" not in caplog.text


@given(
    keys=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=3),
    args=st.lists(st.one_of(st.integers(), st.text(max_size=30)), max_size=5),
)
def test_packed_script_calls_are_what_redis_py_sends(keys: list[str], args: list[object]):
    # The hand-packed EVALSHA (with its cached prefix) is byte for byte redis-py's packing.
    from redis.connection import Encoder, PythonRespSerializer

    from nowramp_auth.stores._redis_pipeline import _evalsha_command

    sha = "a" * 40
    serializer = PythonRespSerializer(6000, Encoder("utf-8", "strict", False).encode)
    expected = b"".join(serializer.pack("EVALSHA", sha, len(keys), *keys, *args))
    assert _evalsha_command(sha, keys, args) == expected
    assert _evalsha_command(sha, keys, args) == expected  # from the cached prefix


@given(
    limit=st.integers(min_value=1, max_value=10**9),
    remaining=st.integers(min_value=-5, max_value=10**9),
    reset=st.floats(min_value=0, max_value=10**7, allow_nan=False),
)
def test_raw_rate_limit_headers_match_the_text_ones(limit: int, remaining: int, reset: float):
    from nowramp_auth._models import RateLimitStatus

    status = RateLimitStatus(limit=limit, remaining=remaining, reset_seconds=reset)
    text = [(k.lower().encode(), v.encode()) for k, v in status.headers()]
    assert status.raw_headers() == text
