"""Bounded loopback load on real servers (uvicorn and gunicorn) with the middleware on Redis:
a fixed number of requests at fixed concurrency, mixing valid, invalid, expired and
scope-failing keys. Every answer must be right, no worker may crash, memory stays flat, and
no secret shows up in the servers' output."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import httpx
import pytest

from nowramp_auth import KeyManager, RedisKeyStore
from nowramp_auth._keys import generate_key
from tests.redis_servers import free_port
from tests.servers import ROOT, SERVERS, server_command

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REQUESTS = int(os.environ.get("NOWRAMP_LOAD_REQUESTS", "3000"))
CONCURRENCY = 20


def rss_kb(pid: int) -> int:
    """Resident memory of a process and its children (the workers)."""
    total = 0
    pids = [pid]
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    pids += [int(p) for p in children.stdout.split()]
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


async def drive(
    base: str, cases: list[tuple[str, dict[str, str], int, str | None]], total: int
) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(total):
        queue.put_nowait(index)
    rng = random.Random(7)
    picks = [rng.randrange(len(cases)) for _ in range(total)]

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            path, headers, status, code = cases[picks[index]]
            response = await client.get(path, headers=headers)
            assert response.status_code == status, (path, response.status_code, response.text)
            if code is not None:
                assert response.json()["error"]["code"] == code
            outcomes[f"{response.status_code} {code or 'OK'}"] += 1

    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        await asyncio.gather(*[worker(client) for _ in range(CONCURRENCY)])
    return outcomes


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_bounded_load(server: str, redis_url: str, namespace: str, tmp_path):
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    manager = KeyManager(store)
    valid = manager.create(scopes=["quotes:read"])
    expired_old = manager.create(scopes=["quotes:read"])
    manager.rotate(expired_old.key.id, grace=timedelta(0))
    secrets = [valid.secret, expired_old.secret]
    cases = [
        ("/quotes", {"X-API-Key": valid.secret}, 200, None),
        ("/orders", {"X-API-Key": valid.secret}, 405, None),
        ("/quotes", {"X-API-Key": generate_key("test")[0]}, 401, "INVALID_API_KEY"),
        ("/quotes", {"X-API-Key": valid.secret[:-1] + "#"}, 401, "INVALID_API_KEY"),
        ("/quotes", {"X-API-Key": expired_old.secret}, 401, "API_KEY_EXPIRED"),
        ("/customers", {"X-API-Key": valid.secret}, 403, None),
        ("/quotes", {}, 401, "MISSING_API_KEY"),
    ]
    port = free_port()
    command = [
        sys.executable,
        "-m",
        *[a.format(port=port) for a in server_command(server, log_level="info")],
    ]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "NOWRAMP_TEST_REDIS_URL": redis_url,
        "NOWRAMP_TEST_NAMESPACE": namespace,
    }
    log_path = tmp_path / "server.log"
    log = log_path.open("w")  # a file, not a pipe: a full pipe would stall the server
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait(base))
        try:
            asyncio.run(drive(base, cases, 300))  # warm up
            before = rss_kb(process.pid)
            first = asyncio.run(drive(base, cases, REQUESTS // 2))
            middle = rss_kb(process.pid)
            second = asyncio.run(drive(base, cases, REQUESTS // 2))
            after = rss_kb(process.pid)
        except httpx.TransportError as exc:
            log.flush()
            tail = log_path.read_text()[-4000:]
            pytest.fail(f"{type(exc).__name__} from {server}; the server's log ends:\n{tail}")
        assert process.poll() is None, "server died under load"
        outcomes = first + second
        assert sum(outcomes.values()) == REQUESTS // 2 * 2
        # Flat memory: the second half may not grow like the first (caches are bounded).
        assert after - middle < 10_000, (before, middle, after)
        print(
            f"\n{server}: {sum(outcomes.values())} requests, {dict(outcomes)}, "
            f"RSS {before} -> {middle} -> {after} kB"
        )
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()
        store.close()
    output = log_path.read_text()
    assert "Traceback" not in output
    assert "Worker failed" not in output and "WORKER TIMEOUT" not in output
    for secret in secrets:
        assert secret not in output and secret[10:] not in output


async def _wait(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=1) as client:
        for _ in range(300):
            try:
                await client.get("/health")
                return
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
    raise RuntimeError("server did not start")
