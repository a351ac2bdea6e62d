"""End to end: real servers over loopback, driven by ``wrk`` (Debian package ``wrk``; a C
load generator, so on a 2-core machine the server, not the generator, is what is measured).
Without ``wrk`` on PATH, the small asyncio generator in ``loadgen`` stands in (and says so).

Every case serves the same request, ``X-API-Key`` included (the bare apps never read it):
parsing that header is the server's cost whatever checks the key, so it is not counted as
the cost of authentication. One more row, bare Starlette sent no such header, shows that
cost (it is not a baseline for any ratio).

* uvicorn, 1 worker (``--no-proxy-headers``): bare Starlette, Starlette's
  ``AuthenticationMiddleware`` (hand-rolled dict + SHA-256), ours on the memory store, ours on
  Redis with a warm cache (an unlimited key and a rate-limited key that never reaches its
  limit).
* gunicorn (1 worker, 4 threads) + Flask: bare, and ours on the memory store.
* The Redis cases once more in a server that calls ``gc.freeze()`` after start-up: a
  rate-limited request waits for Redis, so 32 of them are in flight at once, and CPython's
  full collections (tens of ms over the app's import-time objects) then land in the tail
  latency; frozen, they do not (what long-running Python services commonly do).

Cases run in interleaved rounds, each round with freshly started servers: two processes of
the same app, started alike, differed here by up to 8% in requests/s, so each case's median
spans as many processes as rounds. Each figure is the median over rounds; a ratio ("vs
bare", "vs unlimited") is the median of the ratios measured within each round, so a slow
patch of the machine shifts both sides of a ratio alike. The three keys one Redis server
serves (unlimited, one limit, a plan), whose ratios to each other are targets, are measured
in :data:`SLICES` slices per round in mirrored order (unlimited, limited, plan, plan,
limited, unlimited, ...), each figure of a round the mean of its slices: single samples of
them a few seconds apart swung by 10% and more against each other on this kind of VM, and
the mirrored order cancels a drift across the round. Where ``taskset`` exists, servers
run on CPU 0 and ``wrk`` on CPU 1, so the two do not preempt each other; the private
redis-server runs on CPU 1 too (``benchmarks._redis``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx

from nowramp_auth import Credits, KeyManager, RateLimit, RedisKeyStore
from tests.redis_servers import free_port

from .asgi import BARE_KEY, HAND_KEY

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 32
SLICES = 4
"""Slices per round of each key the Redis server serves (see the module's docstring)."""

UVICORN_BARE = "uvicorn: bare Starlette"
UVICORN_NO_KEY = "uvicorn: bare Starlette, request without X-API-Key"
UVICORN_PEER = "uvicorn: Starlette AuthenticationMiddleware"
UVICORN_MEMORY = "uvicorn: ours, memory store"
UVICORN_REDIS = "uvicorn: ours, Redis (warm cache)"
UVICORN_LIMITED = "uvicorn: ours, Redis, rate-limited key"
UVICORN_REDIS_FROZEN = "uvicorn: ours, Redis (warm cache), gc.freeze()"
UVICORN_LIMITED_FROZEN = "uvicorn: ours, Redis, rate-limited key, gc.freeze()"
UVICORN_QUOTAS = "uvicorn: ours, Redis, key limit + project budget + credits"
GUNICORN_BARE = "gunicorn: bare Flask"
GUNICORN_MEMORY = "gunicorn: Flask + ours, memory store"


BASELINES = {
    UVICORN_PEER: UVICORN_BARE,
    UVICORN_MEMORY: UVICORN_BARE,
    UVICORN_REDIS: UVICORN_BARE,
    UVICORN_LIMITED: UVICORN_REDIS,
    UVICORN_REDIS_FROZEN: UVICORN_BARE,
    UVICORN_LIMITED_FROZEN: UVICORN_REDIS_FROZEN,
    UVICORN_QUOTAS: UVICORN_REDIS,
    GUNICORN_MEMORY: GUNICORN_BARE,
}
"""What each case's ratio compares it with (a rate-limited key with the unlimited one)."""

FIELDS = ("rps", "p50_ms", "p99_ms")
"""What each load run measures."""

SLICED = (UVICORN_REDIS, UVICORN_LIMITED, UVICORN_QUOTAS)
"""The keys of one server measured in interleaved slices (their ratios are targets)."""


def _pinned(cpu: int) -> list[str]:
    # Two cores: keep the server and the load generator off each other's CPU.
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def load_generator() -> str:
    """``wrk`` when installed, else the Python stand-in."""
    return "wrk" if shutil.which("wrk") else "python loadgen (install wrk for real figures)"


def _serve(server: str, mode: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    if server == "uvicorn":
        args = ["uvicorn", "benchmarks.e2e_app:app", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--log-level", "warning", "--no-access-log", "--no-proxy-headers"]
    else:
        args = ["gunicorn", "--workers", "1", "--threads", "4", "--bind", f"127.0.0.1:{port}"]
        args += ["--log-level", "warning", "benchmarks.e2e_app:wsgi"]
    process = subprocess.Popen(
        [*_pinned(0), sys.executable, "-m", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_MODE": mode, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/quotes", timeout=1)
            return process, port
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError(f"{server} ({mode}) did not start") from None
            time.sleep(0.1)


def _wrk(port: int, seconds: float, key: str | None) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency"]
    if key:
        command += ["-H", f"X-API-Key: {key}"]
    out = subprocess.run(
        [*_pinned(1), *command, f"http://127.0.0.1:{port}/quotes"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return {"rps": rps, "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%")}


def _latency(out: str, percentile: str) -> float:
    match = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if match is None:
        raise RuntimeError(f"no {percentile} latency in wrk output:\n{out}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _python_load(port: int, seconds: float, key: str | None) -> dict[str, float]:
    total = max(200, int(seconds * 1500))
    headers = [f"X-API-Key: {key}"] if key else []
    out = subprocess.run(
        [
            *[sys.executable, "-m", "benchmarks.loadgen", "127.0.0.1", str(port), "/quotes"],
            *[str(total), str(CONNECTIONS), *headers],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    if set(result["statuses"]) != {"200"}:
        raise RuntimeError(f"unexpected statuses {result['statuses']}")
    return {k: float(result[k]) for k in FIELDS}


def _load(port: int, seconds: float, key: str | None) -> dict[str, float]:
    if shutil.which("wrk"):
        return _wrk(port, seconds, key)
    return _python_load(port, seconds, key)


def redis_keys(redis_url: str, namespace: str) -> tuple[str, str, str]:
    """Three keys the Redis cases present: an unlimited one, one with a rate limit it never
    reaches, and one with a key limit, a project budget and credits it never uses up (all
    with the apps' scope and a loopback allowlist)."""
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    try:
        manager = KeyManager(store)
        unlimited = manager.create(scopes=["quotes:read"], allowed_ips=["127.0.0.0/8"])
        limited = manager.create(
            scopes=["quotes:read"],
            allowed_ips=["127.0.0.0/8"],
            rate_limit=RateLimit(10**9, timedelta(hours=1)),
        )
        manager.set_project_limits("bench-partner", [RateLimit(10**9, timedelta(days=1))])
        quotas = manager.create(
            scopes=["quotes:read"],
            allowed_ips=["127.0.0.0/8"],
            project_id="bench-partner",
            rate_limit=RateLimit(10**9, timedelta(hours=1)),
            credits=Credits(10**12),
        )
    finally:
        store.close()
    return unlimited.secret, limited.secret, quotas.secret


def run(
    *, seconds: float, rounds: int, redis_url: str, slices: int = SLICES
) -> dict[str, dict[str, float]]:
    """Requests/s and latency percentiles per case (medians over ``rounds``); the keys of
    :data:`SLICED` in ``slices`` slices per round."""
    namespace = "bench-e2e"
    redis_key, limited_key, quotas_key = redis_keys(redis_url, namespace)
    redis_env = {"BENCH_REDIS_URL": redis_url, "BENCH_NAMESPACE": namespace}
    with tempfile.TemporaryDirectory() as directory:
        files = {name: str(Path(directory) / name) for name in ("uvicorn", "gunicorn")}
        plan = {
            UVICORN_BARE: ("uvicorn", "bare", {}),
            UVICORN_PEER: ("uvicorn", "peer", {}),
            UVICORN_MEMORY: ("uvicorn", "memory", {"BENCH_KEY_FILE": files["uvicorn"]}),
            UVICORN_REDIS: ("uvicorn", "redis", redis_env),
            UVICORN_REDIS_FROZEN: ("uvicorn", "redis", {**redis_env, "BENCH_GC_FREEZE": "1"}),
            GUNICORN_BARE: ("gunicorn", "flask-bare", {}),
            GUNICORN_MEMORY: ("gunicorn", "flask-memory", {"BENCH_KEY_FILE": files["gunicorn"]}),
        }
        shared = {  # cases served by another case's server
            UVICORN_NO_KEY: UVICORN_BARE,
            UVICORN_LIMITED: UVICORN_REDIS,
            UVICORN_LIMITED_FROZEN: UVICORN_REDIS_FROZEN,
            UVICORN_QUOTAS: UVICORN_REDIS,
        }
        order = [
            UVICORN_BARE,
            UVICORN_NO_KEY,
            UVICORN_PEER,
            UVICORN_MEMORY,
            UVICORN_REDIS,
            UVICORN_LIMITED,
            UVICORN_QUOTAS,
            UVICORN_REDIS_FROZEN,
            UVICORN_LIMITED_FROZEN,
            GUNICORN_BARE,
            GUNICORN_MEMORY,
        ]
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in order}
        for index in range(rounds):
            # Fresh server processes every round (see the module's docstring).
            servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
            try:
                for name, spec in plan.items():  # started inside try: a failed start stops all
                    servers[name] = _serve(*spec)
                keys = {
                    UVICORN_BARE: BARE_KEY,
                    UVICORN_NO_KEY: None,
                    UVICORN_PEER: HAND_KEY,
                    UVICORN_MEMORY: Path(files["uvicorn"]).read_text(),
                    UVICORN_REDIS: redis_key,
                    UVICORN_LIMITED: limited_key,
                    UVICORN_QUOTAS: quotas_key,
                    UVICORN_REDIS_FROZEN: redis_key,
                    UVICORN_LIMITED_FROZEN: limited_key,
                    GUNICORN_BARE: BARE_KEY,
                    GUNICORN_MEMORY: Path(files["gunicorn"]).read_text(),
                }
                ports = {name: servers[shared.get(name, name)][1] for name in order}
                for name in order:  # warm up: imports, caches, connections, the script
                    _load(ports[name], 1, keys[name])
                shift = index % len(order)
                for name in order[shift:] + order[:shift]:
                    if name not in SLICED:
                        samples[name].append(_load(ports[name], seconds, keys[name]))
                sliced: dict[str, list[dict[str, float]]] = {name: [] for name in SLICED}
                for turn in range(slices):  # mirrored: A B C C B A A B C ...
                    for name in SLICED if turn % 2 == 0 else SLICED[::-1]:
                        sliced[name].append(_load(ports[name], seconds, keys[name]))
                for name, runs in sliced.items():
                    samples[name].append({f: statistics.fmean(r[f] for r in runs) for f in FIELDS})
            finally:
                for process, _ in servers.values():
                    process.terminate()
                    process.wait(timeout=10)

    results: dict[str, dict[str, float]] = {}
    for name, runs in samples.items():
        results[name] = {f: statistics.median([s[f] for s in runs]) for f in FIELDS}
        base = BASELINES.get(name)
        if base is not None:  # ratios within each round, then their median
            pairs = list(zip(runs, samples[base], strict=True))
            results[name]["rps_ratio"] = statistics.median([a["rps"] / b["rps"] for a, b in pairs])
            results[name]["p99_ratio"] = statistics.median(
                [a["p99_ms"] / b["p99_ms"] for a, b in pairs]
            )
    # The quota key against a key with one limit, too (within each round).
    pairs = list(zip(samples[UVICORN_QUOTAS], samples[UVICORN_LIMITED], strict=True))
    results[UVICORN_QUOTAS]["rps_vs_one_limit"] = statistics.median(
        [a["rps"] / b["rps"] for a, b in pairs]
    )
    return results
