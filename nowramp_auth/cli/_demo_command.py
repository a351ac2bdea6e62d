"""``nowramp-auth demo``: the sample partner API on the in-memory store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import UsageError

__all__ = ["register"]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text[:40]!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {text[:40]} is outside 0-65535")
    return port


def register(top: Any) -> None:
    """Add the ``demo`` command."""
    demo = top.add_parser("demo", help="serve the demo partner API on the in-memory store")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=_port, default=8000)
    demo.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..demo import build_demo, curl_lines
    except ImportError as exc:
        needed = f"the demo needs: pip install 'nowramp_auth[demo]' ({exc.name} missing)"
        raise UsageError(needed) from None

    app, keys, _, _ = build_demo()
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{host}:{args.port}"
    print("nowramp_auth demo partner API (in-memory store; keys vanish when it stops)\n")
    print(f"  test key (read scopes, project proj_demo):   {keys.test}")
    print(f"  live key (all scopes, localhost only):       {keys.live}\n")
    print(f"Partner dashboard: {base}/dashboard/  (admin password: {keys.admin_password})\n")
    print("Try:\n")
    for what, line in curl_lines(base, keys):
        print(f"# {what}\n{line}\n")
    sys.stdout.flush()
    # Nothing stands in front of the demo: uvicorn must not take a client address from
    # X-Forwarded-For (it would by default, from loopback), or the allowlists mean nothing.
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", proxy_headers=False)
    return 0
