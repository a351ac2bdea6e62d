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
from typing import Any

import httpx

from tests.redis_servers import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("gunicorn", "uvicorn")


def server_command(
    server: str,
    log_level: str = "warning",
    *,
    asgi_app: str = "tests.server_apps:asgi_app",
    wsgi_app: str = "tests.server_apps:wsgi_app",
    uvicorn_flags: tuple[str, ...] = (),
) -> list[str]:
    """``python -m`` arguments serving ``asgi_app`` (uvicorn) or ``wsgi_app`` (gunicorn) with
    a real server process (``{port}`` is filled in by :func:`serve`); by default the apps of
    ``tests.server_apps``."""
    if server == "uvicorn":
        return [
            "uvicorn",
            asgi_app,
            *uvicorn_flags,
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
        # Longer than httpx's keep-alive expiry (5 s): the client retires an idle
        # connection before the server closes it, so no request is ever written to a
        # connection the server is closing (gunicorn's default is 2 s, and that race is
        # HTTP/1.1's, not the app's: a ReadError however healthy the server).
        "--keep-alive",
        "10",
        "--bind",
        "127.0.0.1:{port}",
        "--log-level",
        log_level,
        "--access-logfile",
        "-",
        wsgi_app,
    ]


def wait_until_up(
    base: str,
    process: subprocess.Popen[Any] | None = None,
    timeout: float = 30,
    health: str = "/health",
) -> None:
    """Poll ``base`` + ``health`` until the server answers (``RuntimeError`` after ``timeout``
    seconds, or at once when ``process`` has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited early with status {process.returncode}")
        try:
            httpx.get(base + health, timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{base} did not answer within {timeout:g} s") from None
            time.sleep(0.1)


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
            try:
                wait_until_up(base, process, health=health)
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}:\n{log.read().decode()}") from None
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
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
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
        wait_until_up(base, process)
        yield base, lines
    finally:
        process.terminate()
        process.wait(timeout=10)
