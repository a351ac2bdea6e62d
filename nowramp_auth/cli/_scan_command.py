"""``nowramp-auth scan [PATH ...]``: find checksum-valid keys in files (no store needed).

Prints ``path:line: <hint> (live key)`` for each (the hint only, never the key) and exits 1
when any is found, 0 otherwise; ``--json`` prints the findings as a JSON array. The
``nowramp-auth-scan`` pre-commit hook runs it on the files of a commit.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..leaks import scan_paths
from ._common import printable

__all__ = ["register"]


def register(top: Any) -> None:
    """Add the ``scan`` command."""
    scan = top.add_parser("scan", help="find API keys in files (exit 1 when any is found)")
    scan.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    scan.add_argument("--json", action="store_true")
    scan.set_defaults(run=_scan)


def _scan(args: argparse.Namespace) -> int:
    findings = list(scan_paths(args.paths))
    if args.json:
        print(json.dumps([f._asdict() for f in findings], indent=2))
    else:
        for f in findings:
            print(f"{printable(f.path)}:{f.line}: {f.hint} ({f.key_type} key)")
    return 1 if findings else 0
