"""Interleaved timing rounds: every case runs once per round, in a rotating order, so a noisy
machine slows all cases alike; each figure is the median over rounds. A comparison between
cases is best made within each round (:func:`paired`): a round lasts well under a second, so
a slow patch of the machine shifts both sides of it alike."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable

Case = Callable[[int], None]


Samples = dict[str, list[float]]


def interleaved(
    cases: dict[str, Case], *, rounds: int, iterations: int, samples: Samples | None = None
) -> dict[str, float]:
    """Median microseconds per operation of each case; ``samples`` (if given) receives every
    round's figure per case."""
    for run in cases.values():
        run(max(1, iterations // 10))  # warm-up: imports, caches, connections
    if samples is None:
        samples = {}
    samples.update({name: [] for name in cases})
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


def paired(samples: Samples, compare: Callable[[dict[str, float]], float]) -> float:
    """The median over rounds of ``compare(that round's figure per case)``."""
    count = min(len(values) for values in samples.values())
    rounds = [{name: values[i] for name, values in samples.items()} for i in range(count)]
    return statistics.median(compare(figures) for figures in rounds)
