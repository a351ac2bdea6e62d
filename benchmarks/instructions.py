"""``python -m benchmarks.instructions``: CPU instructions per request, counted by valgrind.

Timing on a shared VM moves by 10-20% from one run to the next; an instruction count hardly
does (callgrind counts instructions executed, whatever else the machine is doing: the
Starlette cases repeat to within a few hundred instructions, the Flask ones to within about
1%). Each case
runs in its own process under ``valgrind --tool=callgrind`` twice, with 1,000 and with 3,000
requests after a warm-up, with ``PYTHONHASHSEED=0`` and the cyclic collector off while
counting; the difference divided by 2,000 is one request's instructions, start-up and
warm-up cancelled out.

Instructions are not time: C code (OpenSSL's SHA-256, allocation) runs more instructions per
cycle than the interpreter's bytecode dispatch, so a bytecode-heavy path such as ours costs
more time per instruction than the peer's. The timing tables of ``python -m benchmarks``
stay the figures of record; this table says whether a change removed work.

A second table counts a rate-limited key against an unlimited one on Redis (a private
redis-server this tool starts), 16 requests at once, so every pipeline flush answers 16 (as
under ``wrk -c32`` end to end). The store runs without its background threads there (usage
written behind once an hour, no invalidation listener), whose work would land in the counts
by wall time, and with its longest cache TTL. In process, so without the server's own cost
per request: the rate-limited key's extra instructions, not the end-to-end ratio.

Needs ``valgrind`` (Debian package ``valgrind``); takes about five minutes.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from nowramp_auth import MemoryKeyStore, RateLimit, RedisKeyStore

from . import asgi, wsgi
from ._redis import private_redis
from ._report import markdown_table

ROOT = Path(__file__).resolve().parent.parent
SMALL, LARGE = 1_000, 3_000
QUICK = (20, 60)  # --quick: a smoke run of the ASGI cases (the counts are then rough)


def _asgi_ours() -> Callable[[int], None]:
    app, key = asgi._ours(MemoryKeyStore())
    return asgi._runner(app, key)


def _wsgi_ours() -> Callable[[int], None]:
    app, key = wsgi._ours(MemoryKeyStore())
    return wsgi._runner(app, key)


REFUSED = "ours, memory store, refused (unknown key)"
LIMITED = "ours, memory store, rate-limited key"


def _asgi_refused() -> Callable[[int], None]:
    # A well-formed key (valid checksum) that no record holds: refused with 401.
    from nowramp_auth._keys import generate_key

    app, _ = asgi._ours(MemoryKeyStore())
    return asgi._runner(app, generate_key("test")[0], expect=401)


def _asgi_limited() -> Callable[[int], None]:
    app, key = asgi._ours(MemoryKeyStore(), RateLimit(10**9, timedelta(hours=1)))
    return asgi._runner(app, key)


def _with_prometheus(adapter: str) -> Callable[[], Callable[[int], None]]:
    # The same request with PrometheusMetrics on: its overhead is what metrics cost.
    def build() -> Callable[[int], None]:
        from .metrics import prometheus

        if adapter == "asgi":
            app, key = asgi._ours(MemoryKeyStore(), metrics=prometheus())
            return asgi._runner(app, key)
        flask_app, key = wsgi._ours(MemoryKeyStore(), metrics=prometheus())
        return wsgi._runner(flask_app, key)

    return build


ASGI_PROMETHEUS = asgi.OURS + " + PrometheusMetrics"
WSGI_PROMETHEUS = "Flask + ours + PrometheusMetrics"
METRICS_CASES = (ASGI_PROMETHEUS, WSGI_PROMETHEUS)


CONCURRENT = 16
REDIS_URL_ENV = "BENCH_INSTRUCTIONS_REDIS_URL"
REDIS_UNLIMITED = f"ours, Redis, unlimited key, {CONCURRENT} at once"
REDIS_LIMITED = f"ours, Redis, rate-limited key, {CONCURRENT} at once"
REDIS_CASES = (REDIS_UNLIMITED, REDIS_LIMITED)


def _redis_ours(limited: bool) -> Callable[[int], None]:
    # No background threads: their work would be counted by wall time (see the docstring).
    store = RedisKeyStore.from_url(
        os.environ[REDIS_URL_ENV],
        namespace="bench-instructions",
        usage_flush_interval=3600,
        invalidation=False,
        cache_ttl=30,  # the longest: fewer refills of the cache while valgrind is slow
    )
    limit = RateLimit(10**9, timedelta(hours=1)) if limited else None
    app, key = asgi._ours(store, limit)
    return asgi._runner(app, key, concurrent=CONCURRENT)


CASES: dict[str, tuple[str, Callable[[], Callable[[int], None]]]] = {
    # name: (what its overhead is measured against, how to build its runner)
    "bare Starlette": ("", lambda: asgi._runner(asgi.bare_app(), asgi.BARE_KEY)),
    asgi.PEER: ("bare Starlette", lambda: asgi._runner(asgi.peer_app(), asgi.HAND_KEY)),
    asgi.OURS: ("bare Starlette", _asgi_ours),
    REFUSED: ("bare Starlette", _asgi_refused),
    LIMITED: ("bare Starlette", _asgi_limited),
    "bare Flask": ("", lambda: wsgi._runner(wsgi._flask(guarded=False), asgi.BARE_KEY)),
    wsgi.PEER: ("bare Flask", lambda: wsgi._runner(wsgi._peer(asgi.HAND_KEY), asgi.HAND_KEY)),
    "Flask + ours, memory store": ("bare Flask", _wsgi_ours),
    ASGI_PROMETHEUS: (asgi.OURS, _with_prometheus("asgi")),
    WSGI_PROMETHEUS: ("Flask + ours, memory store", _with_prometheus("wsgi")),
    REDIS_UNLIMITED: ("", lambda: _redis_ours(limited=False)),
    REDIS_LIMITED: (REDIS_UNLIMITED, lambda: _redis_ours(limited=True)),
}
PEERS = {asgi.OURS: asgi.PEER, "Flask + ours, memory store": wsgi.PEER}
ASGI_CASES = ("bare Starlette", asgi.PEER, asgi.OURS)  # --quick: these only


def _child(case: str, requests: int, warm_up: int) -> None:
    run = CASES[case][1]()
    run(warm_up)  # imports, caches, the fast path's entry
    gc.collect()
    gc.disable()  # a collection would land in one count and not the other
    run(requests)


def _count(case: str, requests: int, warm_up: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--child",
        case,
        str(requests),
        str(warm_up),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind failed for {case!r}:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def run(*, quick: bool = False) -> dict[str, float]:
    """Instructions per request of each case."""
    small, large = QUICK if quick else (SMALL, LARGE)
    warm_up = small if quick else 320
    if quick:
        return _counts(ASGI_CASES, small, large, warm_up)
    counts = _counts(tuple(c for c in CASES if c not in REDIS_CASES), small, large, warm_up)
    with private_redis() as server:
        os.environ[REDIS_URL_ENV] = server.url
        try:
            counts |= _counts(REDIS_CASES, small * 2, large * 2, warm_up)
        finally:
            del os.environ[REDIS_URL_ENV]
    return counts


def _counts(cases: tuple[str, ...], small: int, large: int, warm_up: int) -> dict[str, float]:
    return {
        case: (_count(case, large, warm_up) - _count(case, small, warm_up)) / (large - small)
        for case in cases
    }


def table(counts: dict[str, float]) -> str:
    """The Markdown table of :func:`run`'s counts."""
    rows = []
    for case, (base, _) in CASES.items():
        if case not in counts or case in REDIS_CASES:
            continue
        overhead = counts[case] - counts[base] if base else 0.0
        ratio = ""
        if case in PEERS:
            peer = PEERS[case]
            ratio = f"{overhead / (counts[peer] - counts[CASES[peer][0]]):.2f}x"
        elif case in METRICS_CASES:
            ratio = "metrics cost"
        elif base:
            ratio = "1.00x"
        shown = f"{overhead:+,.0f}" if base else "-"
        rows.append([case, f"{counts[case]:,.0f}", shown, ratio or "-"])
    text = markdown_table(
        "Instructions per request (valgrind callgrind)",
        ["case", "instructions", "overhead", "overhead vs the peer's"],
        rows,
    )
    if all(case in counts for case in REDIS_CASES):
        unlimited, limited = counts[REDIS_UNLIMITED], counts[REDIS_LIMITED]
        text += "\n" + markdown_table(
            "Redis, in process (valgrind callgrind)",
            ["case", "instructions", "vs the unlimited key"],
            [
                [REDIS_UNLIMITED, f"{unlimited:,.0f}", "-"],
                [REDIS_LIMITED, f"{limited:,.0f}", f"+{limited - unlimited:,.0f}"],
            ],
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]), int(args.child[2]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    print(table(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
