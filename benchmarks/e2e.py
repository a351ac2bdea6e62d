"""End to end: uvicorn (1 worker) serving the bare app and ours, driven over loopback by a
load generator in a separate process: a fixed number of requests at fixed concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from nowramp_auth import KeyManager, RedisKeyStore
from tests.redis_servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def _serve(mode: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.e2e_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_MODE": mode, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/quotes", timeout=1)
            return process, port
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"uvicorn ({mode}) did not start") from None
            time.sleep(0.1)


def _load(port: int, total: int, concurrency: int, key: str | None) -> dict[str, object]:
    headers = [f"X-API-Key: {key}"] if key else []
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.loadgen",
            "127.0.0.1",
            str(port),
            "/quotes",
            str(total),
            str(concurrency),
            *headers,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    if set(result["statuses"]) != {"200"}:  # type: ignore[arg-type]
        raise RuntimeError(f"unexpected statuses {result['statuses']}")
    return result


def run(
    *, total: int, concurrency: int, rounds: int, redis_url: str
) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as directory:
        key_file = Path(directory) / "key"
        store = RedisKeyStore.from_url(redis_url, namespace="bench-e2e")
        redis_key = (
            KeyManager(store).create(scopes=["quotes:read"], allowed_ips=["127.0.0.0/8"]).secret
        )
        store.close()
        servers = {
            "bare Starlette": _serve("bare", {}),
            "ours, memory store": _serve("memory", {"BENCH_KEY_FILE": str(key_file)}),
            "ours, Redis (warm cache)": _serve(
                "redis", {"BENCH_REDIS_URL": redis_url, "BENCH_NAMESPACE": "bench-e2e"}
            ),
        }
        keys = {
            "bare Starlette": None,
            "ours, memory store": key_file.read_text(),
            "ours, Redis (warm cache)": redis_key,
        }
        samples: dict[str, list[dict[str, object]]] = {name: [] for name in servers}
        try:
            for name, (_, port) in servers.items():  # warm up
                _load(port, max(100, total // 10), concurrency, keys[name])
            for index in range(rounds):
                names = list(servers)
                names = names[index % len(names) :] + names[: index % len(names)]
                for name in names:
                    samples[name].append(_load(servers[name][1], total, concurrency, keys[name]))
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(timeout=10)

    def median(values: list[float]) -> float:
        return sorted(values)[len(values) // 2]

    return {
        name: {
            "rps": median([float(s["rps"]) for s in runs]),  # type: ignore[arg-type]
            "p50_ms": median([float(s["p50_ms"]) for s in runs]),  # type: ignore[arg-type]
            "p99_ms": median([float(s["p99_ms"]) for s in runs]),  # type: ignore[arg-type]
        }
        for name, runs in samples.items()
    }
