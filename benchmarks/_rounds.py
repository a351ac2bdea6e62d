"""Interleaved timing rounds: every case runs once per round, in a rotating order, so a noisy
machine slows all cases alike; each figure is the median over rounds."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

Case = Callable[[int], None]


def interleaved(cases: dict[str, Case], *, rounds: int, iterations: int) -> dict[str, float]:
    """Median microseconds per operation of each case."""
    for run in cases.values():
        run(max(1, iterations // 10))  # warm-up: imports, caches, connections
    samples: dict[str, list[float]] = {name: [] for name in cases}
    items = list(cases.items())
    for index in range(rounds):
        shift = index % len(items)
        for name, run in items[shift:] + items[:shift]:
            gc.collect()
            start = time.perf_counter_ns()
            run(iterations)
            elapsed = time.perf_counter_ns() - start
            samples[name].append(elapsed / iterations / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}
