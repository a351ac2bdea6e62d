"""The benchmark tools that CI does not run in full: the instruction-count table."""

from __future__ import annotations

import gc

import pytest

from benchmarks import asgi, instructions, wsgi


@pytest.mark.parametrize("case", list(instructions.CASES))
def test_every_instruction_count_case_serves_its_requests(case: str):
    # What runs under callgrind, without it: each case builds and serves (a runner raises
    # when a request is not answered 200).
    try:
        instructions._child(case, requests=3, warm_up=2)
    finally:
        gc.enable()


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
