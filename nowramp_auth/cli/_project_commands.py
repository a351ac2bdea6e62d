"""``nowramp-auth projects limits P [LIMIT ...]``: the budgets shared by a project's keys.

With limits, sets them (replacing any); with ``--clear``, removes them; with neither, shows
them, with what the project's keys have used of each in its window now. Each change is
audited (``project.limits_changed``, actor ``cli``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .._budget_usage import project_budget_usage
from .._durations import parse_rate_limit
from .._manager import KeyManager
from ._common import CLI_ACTOR, Parser, UsageError, audit_log, open_store, printable

__all__ = ["register"]


def register(top: Any) -> None:
    """Add the ``projects`` command group."""
    projects = top.add_parser("projects", help="budgets shared by a project's keys")
    sub = projects.add_subparsers(dest="action", required=True, parser_class=Parser)
    limits = sub.add_parser(
        "limits",
        help="show, set (e.g. 10000/1d burst=20/1s) or --clear a project's budgets",
    )
    limits.add_argument("project_id", metavar="PROJECT")
    limits.add_argument("limits", nargs="*", metavar="[NAME=]N/WINDOW")
    limits.add_argument("--clear", action="store_true", help="remove every budget")
    limits.add_argument("--json", action="store_true")
    projects.set_defaults(run=_projects)


def _projects(args: argparse.Namespace) -> int:
    if args.clear and args.limits:
        raise UsageError("projects limits: give limits or --clear, not both")
    try:
        budgets = [parse_rate_limit(text) for text in args.limits]
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    store = open_store(args)
    audit = audit_log(store)
    try:
        manager = KeyManager(store, audit=audit, actor=CLI_ACTOR)
        if budgets or args.clear:
            current = manager.set_project_limits(args.project_id, budgets)
        else:
            current = manager.get_project_limits(args.project_id)
        usage = project_budget_usage(store, args.project_id, current, manager.clock())
    finally:
        audit.close()
        store.close()
    used = [u.used for u in usage] if usage is not None else [None] * len(current)
    if args.json:
        limits = [
            {
                "requests": b.requests,
                "window_seconds": b.window.total_seconds(),
                "name": b.name,
                "used": count,
            }
            for b, count in zip(current, used, strict=True)
        ]
        print(json.dumps({"project_id": args.project_id, "limits": limits}, indent=2))
    else:
        text = ", ".join(str(limit) for limit in current) or "none"
        print(f"Project {printable(args.project_id)} budgets: {text}")
        for limit, count in zip(current, used, strict=True):
            if count is not None:
                left = max(0, limit.requests - count)
                print(f"  {printable(str(limit))}: {count} used in the window, {left} left")
    return 0
