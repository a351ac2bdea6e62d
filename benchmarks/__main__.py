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
from typing import Any

from . import asgi, core, e2e, hashing, memory, postgres, scale_out, wsgi
from . import metrics as metrics_cost
from ._redis import private_redis
from ._report import markdown_table as _table
from ._rounds import Samples, paired


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
    e2e_seconds, e2e_rounds, trials = (1.0, 1, 20) if args.quick else (2.0, 7, 300)
    e2e_slices = 2 if args.quick else e2e.SLICES
    memory_keys, limiter_requests = (2_000, 2_000) if args.quick else (100_000, 200_000)
    started = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with private_redis() as server:
        results["core"] = core.run(rounds=rounds, iterations=iterations)
        asgi_rounds: Samples = {}
        wsgi_rounds: Samples = {}
        results["asgi"] = asgi.run(
            rounds=rounds, iterations=iterations, redis_url=server.url, samples=asgi_rounds
        )
        results["wsgi"] = wsgi.run(
            rounds=rounds, iterations=iterations, redis_url=server.url, samples=wsgi_rounds
        )
        results["ratios"] = _paired_ratios(asgi_rounds, wsgi_rounds)
        results["hashing"] = hashing.run(rounds=rounds, iterations=iterations)
        results["metrics"] = metrics_cost.run(rounds=rounds, iterations=iterations)
        results["e2e"] = e2e.run(
            seconds=e2e_seconds, rounds=e2e_rounds, redis_url=server.url, slices=e2e_slices
        )
        results["memory"] = memory.process(memory_keys)
        results["rate_state"] = memory.redis_rate_state(server.url, limiter_requests)
        propagation = scale_out.propagation(server.url, trials)
        trips = scale_out.round_trips(server.url)
        results["postgres"] = postgres.run(
            rounds=rounds,
            iterations=iterations,
            redis_url=server.url,
            e2e_seconds=e2e_seconds,
            e2e_rounds=e2e_rounds,
            trials=trials,
        )
    results["scale_out"] = {**propagation, **trips}
    mode = "quick" if args.quick else "full"
    report = [
        f"Machine: {_machine()}. Mode: {mode} ({rounds} interleaved rounds x {iterations} "
        f"calls in process; end to end {e2e_rounds} round(s) of {e2e_seconds:g} s per case, "
        f"the Redis server's three keys in {e2e_slices} mirrored slices of it per round, "
        f"with {e2e.load_generator()}; medians). Every case receives the same request, "
        "X-API-Key included: the bare apps ignore it.\n"
    ]
    report.append(
        _table(
            "Core (per call)",
            ["case", "µs"],
            [[k, f"{v:,.2f}"] for k, v in results["core"].items()],
        )
    )
    report += _in_process_tables(results["asgi"], results["wsgi"], results["ratios"])
    report.append(_hashing_table(results["hashing"]))
    report.append(
        _table(
            "Metrics (per request, in process; cost: median of the differences within each round)",
            ["case", "µs per request", "metrics cost µs"],
            metrics_cost.rows(results["metrics"]),
        )
    )
    report.append(_e2e_table(results["e2e"]))
    report.append(_memory_table(results["memory"], results["rate_state"]))
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
    report.append(_targets(results))
    report += postgres.tables(results["postgres"], _table)
    text = "\n".join(report)
    print(text)
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if not args.no_chart:
        _chart(results, out / "benchmarks.png")
        print(f"chart: {out / 'benchmarks.png'}")
    print(f"benchmarks took {time.monotonic() - started:.0f} s")
    return 0


def _hashing_table(res: dict[str, float]) -> str:
    rows = []
    for framework in ("Starlette", "Flask"):
        unhashed = res[f"{framework}, no hashing"]
        for name in hashing.HASHERS:
            value = res[f"{framework}, {name}"]
            rows.append([f"{framework}: {name}", f"{value:.2f}", f"{value - unhashed:+.2f}"])
    return _table(
        "Digest of the key inside a request (a middleware that only hashes the header)",
        ["case", "µs per request", "hashing costs µs"],
        rows,
    )


def _paired_ratios(asgi_rounds: Samples, wsgi_rounds: Samples) -> dict[str, float]:
    # Every ratio the tables and targets show, each the median of the ratios within rounds.
    ratios: dict[str, float] = {}
    for name in asgi_rounds:
        if name == asgi.PEER_REFUSAL or name in asgi.REFUSALS:
            ratios[f"asgi/{name}"] = paired(
                asgi_rounds, lambda r, n=name: r[n] / r[asgi.PEER_REFUSAL]
            )
        elif name != "bare Starlette":
            ratios[f"asgi/{name}"] = paired(
                asgi_rounds,
                lambda r, n=name: (
                    (r[n] - r["bare Starlette"]) / (r[asgi.PEER] - r["bare Starlette"])
                ),
            )
    if "ours, Redis, warm cache" in asgi_rounds:
        ratios["asgi/warm vs memory"] = paired(
            asgi_rounds, lambda r: r["ours, Redis, warm cache"] / r[asgi.OURS]
        )
    for name in wsgi_rounds:
        ratios[f"wsgi/{name}"] = paired(wsgi_rounds, lambda r, n=name: r[n] / r["bare Flask"])
    return ratios


def _in_process_tables(
    asgi_res: dict[str, float], wsgi_res: dict[str, float], ratios: dict[str, float]
) -> list[str]:
    bare = asgi_res["bare Starlette"]
    rows = []
    for name, value in asgi_res.items():
        if name == asgi.PEER_REFUSAL or name in asgi.REFUSALS:
            continue
        ratio = "-" if name == "bare Starlette" else f"{ratios[f'asgi/{name}']:.2f}x"
        rows.append([name, f"{value:.1f}", f"{value - bare:+.1f}", ratio])
    tables = [
        _table(
            "ASGI in-process (per request; ours: `@require_scopes` route, key with an allowlist;"
            " ratios: median of the ratios within each round)",
            ["case", "µs", "overhead µs", "overhead vs Starlette AuthenticationMiddleware"],
            rows,
        )
    ]
    tables.append(
        _table(
            "ASGI refusals (per request; ours with a MemoryAuditLog attached)",
            ["case", "µs", "vs the peer's refusal"],
            [
                [n, f"{asgi_res[n]:.1f}", f"{ratios[f'asgi/{n}']:.2f}x"]
                for n in (asgi.PEER_REFUSAL, *asgi.REFUSALS)
            ],
        )
    )
    bare_flask = wsgi_res["bare Flask"]
    tables.append(
        _table(
            "WSGI in-process (per request)",
            ["case", "µs", "overhead µs", "vs bare Flask"],
            [
                [n, f"{v:.1f}", f"{v - bare_flask:+.1f}", f"{ratios[f'wsgi/{n}']:.3f}x"]
                for n, v in wsgi_res.items()
            ],
        )
    )
    return tables


def _e2e_table(res: dict[str, dict[str, float]]) -> str:
    rows = []
    for name, r in res.items():
        base = e2e.BASELINES.get(name)
        against = (
            "unlimited key" if base in (e2e.UVICORN_REDIS, e2e.UVICORN_REDIS_FROZEN) else "bare"
        )
        rows.append(
            [
                name,
                f"{r['rps']:,.0f}",
                "-" if base is None else f"{r['rps_ratio']:.2f}x {against}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                "-" if base is None else f"{r['p99_ratio']:.2f}x",
            ]
        )
    return _table(
        f"End to end: 1 worker, {e2e.CONNECTIONS} connections, loopback ({e2e.load_generator()}; "
        "ratios: median of the ratios within each round)",
        ["case", "requests/s", "requests/s ratio", "p50 ms", "p99 ms", "p99 ratio"],
        rows,
    )


def _memory_table(process: dict[str, float], rate: dict[str, float]) -> str:
    keys = int(process["keys"])
    return _table(
        "Memory",
        ["measure", "value"],
        [
            [
                f"RSS growth after {keys:,} distinct valid keys, memory store",
                f"{process['valid_mb']:.1f} MB (fast-path entries kept: "
                f"{process['verified_entries']:,.0f}, bounded at 10,000)",
            ],
            [
                f"RSS growth after {keys:,} distinct unknown keys",
                f"{process['unknown_mb']:.1f} MB",
            ],
            [
                f"Redis MEMORY USAGE, key limited to 1,000,000/hour, "
                f"{rate['accepted']:,.0f} accepted",
                f"{rate['huge_limit_bytes']:,.0f} bytes (at most 101 sub-window counts)",
            ],
            [
                "Redis MEMORY USAGE, key limited to 1,000/hour, 1,000 accepted (exact log)",
                f"{rate['exact_1000_bytes']:,.0f} bytes",
            ],
        ],
    )


def _targets(results: dict[str, Any]) -> str:
    ratios, e = results["ratios"], results["e2e"]
    ours = ratios[f"asgi/{asgi.OURS}"]
    warm = ratios.get("asgi/warm vs memory", 1.0)
    worst_refusal = max(ratios[f"asgi/{n}"] for n in asgi.REFUSALS)
    flask = ratios["wsgi/Flask + ours, memory store"]
    um, ul, ulf = e[e2e.UVICORN_MEMORY], e[e2e.UVICORN_LIMITED], e[e2e.UVICORN_LIMITED_FROZEN]
    uq = e[e2e.UVICORN_QUOTAS]
    trips = results["scale_out"]
    rate = results["rate_state"]
    rows = [
        ["ASGI overhead <= 0.75x Starlette AuthenticationMiddleware's", ours, 0.75, "<="],
        ["Redis warm cache <= 1.05x memory store (whole request)", warm, 1.05, "<="],
        ["WSGI: Flask + ours <= 1.10x bare Flask", flask, 1.10, "<="],
        ["end to end (uvicorn) >= 0.93x bare requests/s", um["rps_ratio"], 0.93, ">="],
        ["end to end (uvicorn) p99 <= 1.1x bare", um["p99_ratio"], 1.1, "<="],
        ["refusals <= 1.5x the peer's refusal (worst of three)", worst_refusal, 1.5, "<="],
        ["rate-limited key >= 0.8x unlimited key req/s (Redis)", ul["rps_ratio"], 0.8, ">="],
        ["rate-limited key p99 <= 1.3x unlimited key (Redis)", ul["p99_ratio"], 1.3, "<="],
        ["the same, gc.freeze(): req/s >= 0.8x", ulf["rps_ratio"], 0.8, ">="],
        ["the same, gc.freeze(): p99 <= 1.3x", ulf["p99_ratio"], 1.3, "<="],
        [
            "key limit + project budget + credits >= 0.8x unlimited key req/s",
            uq["rps_ratio"],
            0.8,
            ">=",
        ],
        ["the same >= 0.95x a key with one limit (within 5%)", uq["rps_vs_one_limit"], 0.95, ">="],
    ]
    table = [
        [name, f"{value:.2f}x", _met(value <= bound if op == "<=" else value >= bound)]
        for name, value, bound, op in rows
    ]
    costs = results["metrics"]["cost_us"]
    for name, case in (
        ("Starlette", metrics_cost.PROMETHEUS),
        ("Flask", metrics_cost.FLASK_PROMETHEUS),
    ):
        table.append(
            [
                f"PrometheusMetrics costs <= {metrics_cost.BUDGET_US:g} µs per request ({name})",
                f"{costs[case]:+.2f} µs",
                _met(costs[case] <= metrics_cost.BUDGET_US),
            ]
        )
    table += [
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
            "revocation propagation p99 < 100 ms",
            f"{trips['p99_ms']:.1f} ms",
            _met(trips["p99_ms"] < 100),
        ],
        [
            "rate-limit state of a 1,000,000/hour key bounded (< 8 KB)",
            f"{rate['huge_limit_bytes']:,.0f} bytes",
            _met(rate["huge_limit_bytes"] < 8192),
        ],
    ]
    return _table("Targets", ["target", "measured", "met"], table)


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


def _chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(19, 4.8))
    e2e_rps = {name: r["rps"] for name, r in results["e2e"].items()}
    panels = (
        (axes[0], results["asgi"], "ASGI in-process: µs per request (median, lower is better)"),
        (axes[1], results["wsgi"], "WSGI in-process: µs per request (median, lower is better)"),
        (axes[2], e2e_rps, "end to end: requests/s (higher is better)"),
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
