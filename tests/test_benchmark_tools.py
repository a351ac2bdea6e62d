"""The benchmark tools that CI does not run in full: the instruction-count table."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from benchmarks import asgi, instructions, server_instructions, wsgi


@pytest.mark.parametrize("case", list(instructions.CASES))
def test_every_instruction_count_case_serves_its_requests(
    case: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
):
    # What runs under callgrind, without it: each case builds and serves (a runner raises
    # when a request is not answered 200). The Redis cases serve 16 requests at once.
    requests = 3
    if case in instructions.REDIS_CASES:
        monkeypatch.setenv(instructions.REDIS_URL_ENV, request.getfixturevalue("redis_url"))
        requests = instructions.CONCURRENT
    try:
        instructions._child(case, requests=requests, warm_up=requests)
    finally:
        gc.enable()


def test_the_concurrent_runner_serves_every_request_at_once_per_round():
    seen: list[int] = []
    in_flight = 0

    async def app(scope: dict, receive: object, send: Any) -> None:
        nonlocal in_flight
        in_flight += 1
        await asyncio.sleep(0)  # every request of the round starts before any ends
        seen.append(in_flight)
        in_flight -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    asgi._runner(app, None, concurrent=4)(8)
    assert len(seen) == 8 and seen[0] == 4


def test_the_instruction_table_compares_overheads_with_the_peers():
    counts = {
        "bare Starlette": 100_000.0,
        asgi.PEER: 120_000.0,
        asgi.OURS: 115_000.0,
        "bare Flask": 300_000.0,
        wsgi.PEER: 320_000.0,
        "Flask + ours, memory store": 330_000.0,
    }
    rows = instructions.table(counts).splitlines()
    assert f"| {asgi.OURS} | 115,000 | +15,000 | 0.75x |" in rows
    assert f"| {asgi.PEER} | 120,000 | +20,000 | 1.00x |" in rows
    assert "| Flask + ours, memory store | 330,000 | +30,000 | 1.50x |" in rows
    assert "| bare Flask | 300,000 | - | - |" in rows
    # A quick run counts the ASGI cases only; the table shows what was counted.
    quick = {name: counts[name] for name in instructions.ASGI_CASES}
    assert "Flask" not in instructions.table(quick)
    assert "Redis" not in instructions.table(quick)
    # A metrics case: its overhead is against the same request without metrics.
    metered = counts | {instructions.ASGI_PROMETHEUS: 115_400.0}
    row = f"| {instructions.ASGI_PROMETHEUS} | 115,400 | +400 | metrics cost |"
    assert row in instructions.table(metered).splitlines()
    redis = {instructions.REDIS_UNLIMITED: 160_000.0, instructions.REDIS_LIMITED: 230_000.0}
    rows = instructions.table(counts | redis).splitlines()
    assert f"| {instructions.REDIS_LIMITED} | 230,000 | +70,000 |" in rows


def test_the_server_instruction_table_compares_each_case_with_its_baseline():
    counts = {
        server_instructions.BARE: 600_000.0,
        server_instructions.MEMORY: 630_000.0,
        server_instructions.REDIS: 640_000.0,
        server_instructions.LIMITED: 800_000.0,
        server_instructions.QUOTAS: 832_000.0,
    }
    rows = server_instructions.table(counts).splitlines()
    assert f"| {server_instructions.BARE} | 600,000 | - | - |" in rows
    assert f"| {server_instructions.MEMORY} | 630,000 | 1.050x bare | 0.95x |" in rows
    assert f"| {server_instructions.LIMITED} | 800,000 | 1.250x unlimited | 0.80x |" in rows
    assert f"| {server_instructions.QUOTAS} | 832,000 | 1.300x unlimited | 0.77x |" in rows
