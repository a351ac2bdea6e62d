"""Memory: what authentication state costs, and that every cache is bounded.

* Process RSS after authenticating N distinct valid keys and N distinct well-formed unknown
  keys on the memory store (run in a fresh process, ``python -m benchmarks.memory N``).
* Redis ``MEMORY USAGE`` of one key lineage's rate-limit state: a key limited to 1,000,000
  per hour after many accepted requests (bounded sub-window counts), against the exact log
  of a key limited to 1,000 after 1,000.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nowramp_auth import AuthError, RateLimit

ROOT = Path(__file__).resolve().parent.parent


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure_process(count: int) -> dict[str, float]:
    """RSS growth (MB) from authenticating ``count`` valid and ``count`` unknown keys."""
    from nowramp_auth import Authenticator, KeyManager, MemoryKeyStore
    from nowramp_auth._decision import _derived_cache
    from nowramp_auth._keys import generate_key

    store = MemoryKeyStore()
    manager = KeyManager(store)
    secrets = [manager.create(scopes=["quotes:read"]).secret for _ in range(count)]
    unknown = [generate_key("test")[0] for _ in range(count)]
    auth = Authenticator(store)
    before = _rss_kb()
    for secret in secrets:
        auth.authenticate(secret, client_ip="127.0.0.1")
    after_valid = _rss_kb()
    for secret in unknown:
        with contextlib.suppress(AuthError):
            auth.authenticate(secret, client_ip="127.0.0.1")
    after_unknown = _rss_kb()
    verified = auth._verified
    return {
        "keys": count,
        "valid_mb": (after_valid - before) / 1024,
        "unknown_mb": (after_unknown - after_valid) / 1024,
        "verified_entries": len(verified) if verified is not None else 0,
        "derived_entries": len(_derived_cache),
    }


def process(count: int) -> dict[str, float]:
    """:func:`measure_process` in a fresh interpreter (so nothing else skews RSS)."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", str(count)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def redis_rate_state(redis_url: str, accepted: int) -> dict[str, float]:
    """Bytes of rate-limit state in Redis for a huge limit and for an exact one."""
    from nowramp_auth import KeyManager, RedisKeyStore

    store = RedisKeyStore.from_url(redis_url, namespace="bench-mem")
    try:
        manager = KeyManager(store)
        big = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(1_000_000, _HOUR))
        exact = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(1_000, _HOUR))

        now = datetime.now(UTC)  # not used: Redis' own clock decides

        async def spend(lineage: str, limit: RateLimit, total: int) -> None:
            for start in range(0, total, 1000):
                size = min(1000, total - start)
                await asyncio.gather(
                    *[store.hit_rate_limit_async(lineage, limit, now) for _ in range(size)]
                )
            await store.aclose()

        asyncio.run(spend(big.key.lineage, RateLimit(1_000_000, _HOUR), accepted))
        asyncio.run(spend(exact.key.lineage, RateLimit(1_000, _HOUR), 1_000))
        client = store._client()
        names = store.names
        big_bytes = int(client.memory_usage(names.rate_counts(big.key.lineage)) or 0)
        big_bytes += int(client.memory_usage(names.rate_log(big.key.lineage)) or 0)
        exact_bytes = int(client.memory_usage(names.rate_log(exact.key.lineage)) or 0)
        return {
            "accepted": accepted,
            "huge_limit_bytes": big_bytes,
            "exact_1000_bytes": exact_bytes,
        }
    finally:
        store.close()


_HOUR = timedelta(hours=1)


if __name__ == "__main__":
    print(json.dumps(measure_process(int(sys.argv[1]))))
