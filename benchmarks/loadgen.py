"""A small HTTP/1.1 load generator: N requests over C keep-alive connections, one process.

Run as ``python -m benchmarks.loadgen HOST PORT PATH N C [HEADER ...]``; prints JSON with
requests/s and latency percentiles. Raw asyncio sockets keep its own cost low, so the server
under test, not the generator, is what is measured (both run on this machine).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def _connection(
    host: str,
    port: int,
    request: bytes,
    count: int,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(count):
            start = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run(
    host: str, port: int, path: str, total: int, concurrency: int, headers: list[str]
) -> dict[str, object]:
    head = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers]
    request = ("\r\n".join(head) + "\r\n\r\n").encode()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    per = [total // concurrency + (1 if i < total % concurrency else 0) for i in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*[_connection(host, port, request, n, latencies, statuses) for n in per])
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": len(latencies),
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "statuses": statuses,
    }


def main() -> None:
    host, port, path, total, concurrency, *headers = sys.argv[1:]
    result = asyncio.run(run(host, int(port), path, int(total), int(concurrency), headers))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
