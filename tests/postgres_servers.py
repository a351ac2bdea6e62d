"""Databases of the test suite's own on a PostgreSQL server (never the machine's others).

The server is ``NOWRAMP_TEST_POSTGRES_URL`` (default: the local server, trust
authentication). Each test module creates a database of its own and drops it; each test
gets a schema of its own in it. Tests never stop the server: fault tests cut connections
with a TCP proxy they control (``tests/tcp_proxy.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

__all__ = ["ADMIN_URL", "postgres_available", "scratch_database"]

ADMIN_URL = os.environ.get(
    "NOWRAMP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def postgres_available() -> str | None:
    """Why PostgreSQL cannot be used, or ``None`` when it can."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'nowramp_auth[postgres]')"
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return f"no PostgreSQL at {urlsplit(ADMIN_URL).hostname}: {type(exc).__name__}"


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new database (its URL) for the duration of the block, dropped after."""
    import psycopg

    name = "nowramp_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
