"""``python -m benchmarks``: measure nowramp_auth against the alternatives, print Markdown
tables, write a PNG chart. Starts (and stops) its own redis-server."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from . import asgi, core, e2e, scale_out, wsgi
from ._redis import private_redis


def _table(title: str, headers: list[str], rows: list[list[str]]) -> str:
    lines = [
        f"### {title}",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--out", default="benchmarks/results", help="where results go")
    args = parser.parse_args(argv)
    rounds, iterations = (2, 20) if args.quick else (15, 2000)
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, float]] = {}
    e2e_total, e2e_rounds, trials = (200, 1, 20) if args.quick else (4000, 3, 300)
    with private_redis() as server:
        results["core"] = core.run(rounds=rounds, iterations=iterations)
        results["asgi"] = asgi.run(rounds=rounds, iterations=iterations, redis_url=server.url)
        results["wsgi"] = wsgi.run(rounds=rounds, iterations=iterations, redis_url=server.url)
        e2e_results = e2e.run(
            total=e2e_total, concurrency=32, rounds=e2e_rounds, redis_url=server.url
        )
        propagation = scale_out.propagation(server.url, trials)
        trips = scale_out.round_trips(server.url)
    report = [
        f"Machine: {_machine()}. Mode: {'quick' if args.quick else 'full'} "
        f"({rounds} interleaved rounds x {iterations} calls; medians).\n"
    ]
    report.append(
        _table(
            "Core (per call)",
            ["case", "µs"],
            [[k, f"{v:,.2f}"] for k, v in results["core"].items()],
        )
    )
    asgi_res = results["asgi"]
    bare = asgi_res["bare Starlette"]
    baseline = asgi_res["Starlette AuthenticationMiddleware (dict + SHA-256)"] - bare
    rows = []
    for name, value in asgi_res.items():
        overhead = value - bare
        ratio = "-" if name == "bare Starlette" else f"{overhead / baseline:.2f}x"
        rows.append([name, f"{value:.1f}", f"{overhead:+.1f}", ratio])
    report.append(
        _table(
            "ASGI in-process (per request)",
            ["case", "µs", "overhead µs", "overhead vs Starlette auth"],
            rows,
        )
    )
    wsgi_res = results["wsgi"]
    bare_flask = wsgi_res["bare Flask"]
    report.append(
        _table(
            "WSGI in-process (per request)",
            ["case", "µs", "overhead µs", "overhead %"],
            [
                [n, f"{v:.1f}", f"{v - bare_flask:+.1f}", f"{(v - bare_flask) / bare_flask:+.0%}"]
                for n, v in wsgi_res.items()
            ],
        )
    )
    bare_rps = e2e_results["bare Starlette"]["rps"]
    report.append(
        _table(
            f"End to end: uvicorn, 1 worker, {e2e_total} requests, 32 connections, loopback",
            ["case", "requests/s", "vs bare", "p50 ms", "p99 ms"],
            [
                [
                    n,
                    f"{r['rps']:,.0f}",
                    f"{r['rps'] / bare_rps:.2f}x",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                ]
                for n, r in e2e_results.items()
            ],
        )
    )
    report.append(
        _table(
            "Scale-out",
            ["measure", "value"],
            [
                [
                    f"revocation propagation, {propagation['trials']:.0f} trials (p50 / p99 / max)",
                    f"{propagation['p50_ms']:.2f} / {propagation['p99_ms']:.2f} / "
                    f"{propagation['max_ms']:.2f} ms",
                ]
            ]
            + [[f"Redis commands per request: {k}", str(v)] for k, v in trips.items()],
        )
    )
    memory = asgi_res["ours, memory store"]
    warm = asgi_res.get("ours, Redis, warm cache", memory)
    limited = asgi_res.get("ours, Redis, warm cache, rate-limited key", warm)
    ours_overhead = memory - bare
    report.append(
        _table(
            "Targets",
            ["target", "measured", "met"],
            [
                [
                    "ASGI overhead <= 0.5x Starlette AuthenticationMiddleware's",
                    f"{ours_overhead / baseline:.2f}x",
                    _met(ours_overhead / baseline <= 0.5),
                ],
                [
                    "Redis warm cache <= 1.1x memory store (per request)",
                    f"{warm / memory:.2f}x",
                    _met(warm / memory <= 1.1),
                ],
                [
                    "cold path: exactly 1 round trip",
                    str(trips["valid key, cold (cache off)"]),
                    _met(trips["valid key, cold (cache off)"] == 1),
                ],
                [
                    "bad checksum: 0 round trips",
                    str(trips["bad checksum"]),
                    _met(trips["bad checksum"] == 0),
                ],
                [
                    "WSGI overhead <= 10% of bare Flask",
                    f"{(wsgi_res['Flask + ours, memory store'] - bare_flask) / bare_flask:.0%}",
                    _met(wsgi_res["Flask + ours, memory store"] - bare_flask <= 0.1 * bare_flask),
                ],
                [
                    "end to end >= 0.9x bare requests/s",
                    f"{e2e_results['ours, memory store']['rps'] / bare_rps:.2f}x",
                    _met(e2e_results["ours, memory store"]["rps"] >= 0.9 * bare_rps),
                ],
                [
                    "revocation propagation p99 < 100 ms",
                    f"{propagation['p99_ms']:.1f} ms",
                    _met(propagation["p99_ms"] < 100),
                ],
                [
                    "cost of a rate-limited key on Redis (extra µs/request)",
                    f"{limited - warm:+.0f} µs",
                    "reported",
                ],
            ],
        )
    )
    results["e2e"] = e2e_results  # type: ignore[assignment]
    results["scale_out"] = {**propagation, **trips}
    text = "\n".join(report)
    print(text)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if not args.no_chart:
        _chart(results, out / "benchmarks.png")
        print(f"chart: {out / 'benchmarks.png'}")
    print(f"benchmarks took {time.monotonic() - started:.0f} s")
    return 0


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


def _chart(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(19, 4.8))
    e2e_rps = {name: r["rps"] for name, r in results["e2e"].items()}  # type: ignore[index]
    panels = (
        (axes[0], results["asgi"], "ASGI in-process: µs per request (median, lower is better)"),
        (axes[1], results["wsgi"], "WSGI in-process: µs per request (median, lower is better)"),
        (axes[2], e2e_rps, "uvicorn end to end: requests/s (higher is better)"),
    )
    for axis, data, title in panels:
        names = list(data)
        values = [float(data[n]) for n in names]
        axis.barh(names, values, color="#3b6ea8")
        axis.invert_yaxis()
        axis.set_title(title, fontsize=10)
        axis.tick_params(axis="y", labelsize=8)
        for index, value in enumerate(values):
            axis.text(value, index, f" {value:,.1f}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
