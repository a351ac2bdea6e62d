"""A private redis-server for the benchmarks (never the machine's shared one)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.redis_servers import RedisServer


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="nowramp-bench-") as directory:
        server = RedisServer(Path(directory)).start()
        # On two cores or more, Redis shares CPU 1 with the load generator, so a measured
        # server pinned to CPU 0 (see e2e) keeps its CPU to itself.
        if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2 and server.process:
            os.sched_setaffinity(server.process.pid, {1})
        try:
            yield server
        finally:
            server.stop()
