"""Rotation under fire: 8 threads and 50 asyncio tasks hammer the old and the new key while
the key is rotated. No wrongful refusal during the grace period; after it (clock advanced) the
old key is API_KEY_EXPIRED and the new one still works."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest

from nowramp_auth import Authenticator, AuthError, ErrorCode, KeyManager, KeyStore
from nowramp_auth.testing import FrozenClock

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["memory", "redis", "cluster", "postgres"])
def test_rotation_under_load(
    kind: str, request: pytest.FixtureRequest, namespace: str, clock: FrozenClock
):
    from tests.conftest import make_store

    store: KeyStore = make_store(kind, request, namespace)
    manager = KeyManager(store, clock=clock)
    auth = Authenticator(store, clock=clock)
    old = manager.create(scopes=["quotes:read"])
    secrets = [old.secret]  # the new key joins once it exists
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def record(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1

    def thread_worker() -> None:
        index = 0
        while not stop.is_set():
            secret = secrets[index % len(secrets)]
            index += 1
            try:
                auth.authenticate(secret, required_scopes=["quotes:read"])
                record("ok")
            except AuthError as error:
                record(error.code.value)

    async def task_worker(offset: int) -> None:
        index = offset
        while not stop.is_set():
            secret = secrets[index % len(secrets)]
            index += 1
            try:
                await auth.authenticate_async(secret, required_scopes=["quotes:read"])
                record("ok")
            except AuthError as error:
                record(error.code.value)
            await asyncio.sleep(0)

    async def tasks() -> None:
        await asyncio.gather(*[task_worker(i) for i in range(50)])

    threads = [threading.Thread(target=thread_worker) for _ in range(8)]
    threads.append(threading.Thread(target=lambda: asyncio.run(tasks())))
    for thread in threads:
        thread.start()
    try:
        deadline = 200
        while sum(outcomes.values()) < deadline:
            stop.wait(0.01)
        new = manager.rotate(old.key.id)
        secrets.append(new.secret)
        before = sum(outcomes.values())
        while sum(outcomes.values()) < before + 1000:
            stop.wait(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert set(outcomes) == {"ok"}, outcomes  # zero wrongful refusals during the grace period
    clock.advance(hours=24, seconds=1)
    with pytest.raises(AuthError) as info:
        auth.authenticate(old.secret)
    assert info.value.code == ErrorCode.API_KEY_EXPIRED
    auth.authenticate(new.secret)
    print(f"\nrotation under load ({kind}): {outcomes['ok']} requests accepted, 0 refused")
