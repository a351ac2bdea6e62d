"""Start real server processes on free loopback ports and wait until they answer."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.redis_servers import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("gunicorn", "uvicorn")


def server_command(server: str, log_level: str = "warning") -> list[str]:
    """``python -m`` arguments serving ``tests.server_apps`` with a real server process
    (``{port}`` is filled in by :func:`serve`)."""
    if server == "uvicorn":
        return [
            "uvicorn",
            "tests.server_apps:asgi_app",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--log-level",
            log_level,
        ]
    return [
        "gunicorn",
        "--workers",
        "2",
        "--threads",
        "4",
        "--bind",
        "127.0.0.1:{port}",
        "--log-level",
        log_level,
        "--access-logfile",
        "-",
        "tests.server_apps:wsgi_app",
    ]


@contextmanager
def serve(
    args: list[str],
    env: dict[str, str] | None = None,
    health: str = "/health",
    port: int | None = None,
) -> Iterator[str]:
    """Run ``python -m <args>`` (``{port}`` substituted) until the context ends."""
    port = port or free_port()
    command = [sys.executable, "-m", *[a.format(port=port) for a in args]]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    # Output goes to a temporary file, not a pipe: a full pipe would stall the server.
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"server exited early:\n{log.read().decode()}")
                try:
                    httpx.get(base + health, timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("server did not start") from None
                    time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def demo() -> Iterator[tuple[str, list[str]]]:
    """``nowramp-auth demo`` on a free port: its base URL and what it printed (the keys,
    the admin password and the curl lines)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nowramp_auth", "demo", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        while not any("Bearer ramp_sess_PASTE_TOKEN" in line for line in lines):
            line = process.stdout.readline()
            if not line:
                raise RuntimeError("demo exited: " + "".join(lines))
            lines.append(line)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(base + "/health", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("demo did not answer") from None
                time.sleep(0.1)
        yield base, lines
    finally:
        process.terminate()
        process.wait(timeout=10)
