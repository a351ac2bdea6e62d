"""``python -m benchmarks.server_instructions``: CPU instructions per request of a real
uvicorn server under load, counted by valgrind.

The end-to-end table of ``python -m benchmarks`` is the figure of record, but on a shared VM
its ratios move by 10% and more from one run to the next. This counts the same servers'
work instead: each case's server (``benchmarks.e2e_app``, one uvicorn worker, h11) runs under
``valgrind --tool=callgrind`` with instrumentation off; after a warm-up, counting is switched
on (``callgrind_control``) for N requests and again for 3N, sent by ``benchmarks.loadgen``
over 32 keep-alive connections (as ``wrk -c32``), and the difference divided by 2N is one
request's instructions in the server: h11's parsing and writing, asyncio, Starlette, ours,
the collector, and a rate-limited request's share of its pipeline flush.

What it does not count: the kernel's work for the server's system calls (a rate-limited
request's share of one ``send`` and one ``recv`` to Redis per flush), and time a request
spends waiting. How many requests share a flush depends on timing, so the rate-limited count
moves by about 1% between runs (the others by about 0.1%).

Needs ``valgrind`` (Debian package ``valgrind``); takes about six minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.redis_servers import free_port

from ._redis import private_redis
from ._report import markdown_table
from .asgi import BARE_KEY
from .e2e import redis_keys

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 32
REQUESTS = 1_000
NAMESPACE = "bench-server-instructions"

BARE = "uvicorn: bare Starlette"
MEMORY = "uvicorn: ours, memory store"
REDIS = "uvicorn: ours, Redis (warm cache)"
LIMITED = "uvicorn: ours, Redis, rate-limited key"
QUOTAS = "uvicorn: ours, Redis, key limit + project budget + credits"
BASELINES = {MEMORY: BARE, REDIS: BARE, LIMITED: REDIS, QUOTAS: REDIS}
"""What each case's ratio compares it with (a rate-limited key, and a key with a plan, with
the unlimited one)."""


def _load(port: int, requests: int, key: str) -> None:
    done = subprocess.run(
        [
            *[sys.executable, "-m", "benchmarks.loadgen", "127.0.0.1", str(port), "/quotes"],
            *[str(requests), str(CONNECTIONS), f"X-API-Key: {key}"],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    statuses = json.loads(done.stdout)["statuses"]
    if set(statuses) != {"200"}:
        raise RuntimeError(f"unexpected statuses {statuses}")


def _control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=True)


def _counted(pid: int, port: int, requests: int, key: str, dumps: Path) -> int:
    # Instructions the server executed while serving `requests` requests.
    _control(pid, "--zero")
    _control(pid, "--instr=on")
    _load(port, requests, key)
    _control(pid, "--instr=off")
    _control(pid, "--dump")
    newest = max(dumps.glob("callgrind.*.*"), key=lambda p: int(p.name.rsplit(".", 1)[1]))
    found = re.search(r"^totals: (\d+)", newest.read_text(), re.M)
    if found is None:
        raise RuntimeError(f"no totals in {newest}")
    return int(found.group(1))


def _count(mode: str, env: dict[str, str], key: str | None, requests: int) -> float:
    # `key`: None for the memory store's server, which writes its own key to a file.
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nowramp-cg-") as directory:
        dumps = Path(directory)
        key_file = dumps / "key"
        command = [
            *(["taskset", "-c", "0"] if shutil.which("taskset") else []),
            *["valgrind", "--tool=callgrind", "--instr-atstart=no"],
            f"--callgrind-out-file={dumps}/callgrind.%p",
            *[sys.executable, "-m", "uvicorn", "benchmarks.e2e_app:app"],
            *["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            *["--no-access-log", "--no-proxy-headers"],
        ]
        environment = {
            **os.environ,
            **env,
            "PYTHONPATH": str(ROOT),
            "PYTHONHASHSEED": "0",
            "BENCH_MODE": mode,
            "BENCH_KEY_FILE": str(key_file),
        }
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 180  # starting under valgrind is slow
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/quotes", timeout=5)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError(f"uvicorn ({mode}) did not start") from None
                    time.sleep(0.5)
            if key is None:
                key = key_file.read_text()
            _load(port, 2 * requests, key)  # warm up: caches, the connection, the script
            small = _counted(server.pid, port, requests, key, dumps)
            large = _counted(server.pid, port, 3 * requests, key, dumps)
        finally:
            server.terminate()
            server.wait(timeout=60)
    return (large - small) / (2 * requests)


def run(requests: int = REQUESTS) -> dict[str, float]:
    """Instructions per request of each case's server."""
    with private_redis() as redis:
        unlimited, limited, quotas = redis_keys(redis.url, NAMESPACE)
        env = {"BENCH_REDIS_URL": redis.url, "BENCH_NAMESPACE": NAMESPACE}
        return {
            BARE: _count("bare", {}, BARE_KEY, requests),
            MEMORY: _count("memory", {}, None, requests),
            REDIS: _count("redis", env, unlimited, requests),
            LIMITED: _count("redis", env, limited, requests),
            QUOTAS: _count("redis", env, quotas, requests),
        }


def table(counts: dict[str, float]) -> str:
    """The Markdown table of :func:`run`'s counts."""
    rows = []
    for case, count in counts.items():
        base = BASELINES.get(case)
        if base is None or base not in counts:
            rows.append([case, f"{count:,.0f}", "-", "-"])
            continue
        ratio = count / counts[base]
        rows.append([case, f"{count:,.0f}", f"{ratio:.3f}x {_short(base)}", f"{1 / ratio:.2f}x"])
    return markdown_table(
        "Instructions per request in a uvicorn server under load (valgrind callgrind)",
        ["case", "instructions", "ratio", "as requests/s"],
        rows,
    )


def _short(base: str) -> str:
    return "unlimited" if base == REDIS else "bare"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.server_instructions", description=__doc__
    )
    parser.add_argument("--requests", type=int, default=REQUESTS, help="N (default 1,000)")
    args = parser.parse_args(argv)
    missing = [tool for tool in ("valgrind", "callgrind_control") if shutil.which(tool) is None]
    if missing:
        print(f"{', '.join(missing)} not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    print(table(run(args.requests)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
