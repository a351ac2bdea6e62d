"""``nowramp-auth``: manage keys, sessions, the audit log and dashboard accounts; run the demo.

One module per command group: :mod:`._keys_commands`, :mod:`._session_commands`,
:mod:`._audit_commands`, :mod:`._account_commands`, :mod:`._scan_command`,
:mod:`._demo_command`; what they share
(the store options, usage errors, safe output) is :mod:`._common`.

Security model: secrets are printed once, by ``keys create`` and ``keys rotate``; listings
never show them. ``sessions create`` reads the API key from an environment variable, never
from the command line. The pepper comes from ``NOWRAMP_AUTH_PEPPER``. Errors are one line on
stderr (exit status 2 for usage errors, 1 otherwise), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._errors import AuthError
from .._version import __version__
from ..stores._errors import SchemaMismatch, StoreUnavailable
from . import (
    _account_commands,
    _audit_commands,
    _db_commands,
    _demo_command,
    _keys_commands,
    _project_commands,
    _scan_command,
    _session_commands,
)
from ._common import CLI_ACTOR, ENV_STORE_URL, ENV_URL, Parser, UsageError, printable

__all__ = ["CLI_ACTOR", "main"]

_GROUPS = (
    _keys_commands,
    _project_commands,
    _session_commands,
    _audit_commands,
    _account_commands,
    _scan_command,
    _db_commands,
    _demo_command,
)


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="nowramp-auth", description="Manage nowramp_auth API keys.")
    parser.add_argument("--version", action="version", version=f"nowramp-auth {__version__}")
    parser.add_argument(
        "--store-url",
        help=f"redis://, rediss:// or postgresql:// URL of the key store (default: "
        f"${ENV_STORE_URL}, then ${ENV_URL})",
    )
    parser.add_argument("--redis-url", help="a Redis store URL (kept for older scripts)")
    parser.add_argument("--cluster", action="store_true", help="the URL is a Redis Cluster node")
    parser.add_argument("--namespace", default="nowramp", help="Redis key prefix")
    parser.add_argument("--schema", default="nowramp_auth", help="PostgreSQL schema")
    top = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for group in _GROUPS:
        group.register(top)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nowramp-auth``; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        status: int = args.run(args)
        return status
    except UsageError as exc:
        print(f"nowramp-auth: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(
            "nowramp-auth: error: no such key, session or account: " + printable(str(exc.args[0])),
            file=sys.stderr,
        )
        return 1
    except (ValueError, TypeError) as exc:
        print(f"nowramp-auth: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except SchemaMismatch as exc:
        print(f"nowramp-auth: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        reason = str(exc)
        if reason.startswith(("Redis unavailable", "PostgreSQL unavailable")):
            reason = f"store unreachable ({reason})"
        print(f"nowramp-auth: error: {printable(reason)}", file=sys.stderr)
        return 1
    except AuthError as exc:
        print(f"nowramp-auth: error: {exc.code.value}: {exc.message}", file=sys.stderr)
        return 1
    except OverflowError:  # a number no date or count can hold (guarded above; last resort)
        print("nowramp-auth: error: a number given is too large", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
