"""``nowramp-auth accounts ...``: the dashboard's sign-in accounts.

Security model: the password is prompted for (twice) or read from an environment variable,
never taken from the command line; the store keeps only its argon2id hash. A password change,
``disable`` and ``remove`` end the account's dashboard sessions everywhere.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from ._common import Parser, UsageError, open_store, printable, table, when

__all__ = ["register"]


def register(top: Any) -> None:
    """Add the ``accounts`` command group."""
    accounts = top.add_parser("accounts", help="dashboard sign-in accounts")
    asub = accounts.add_subparsers(dest="action", required=True, parser_class=Parser)
    add = asub.add_parser("add", help="add an account (partner of projects, or operator)")
    add.add_argument("name")
    who = add.add_mutually_exclusive_group(required=True)
    who.add_argument("--project", dest="projects", action="append", metavar="P")
    who.add_argument("--operator", action="store_true", help="every project")
    add.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
    asub.add_parser("list", help="list accounts").add_argument("--json", action="store_true")
    passwd = asub.add_parser("passwd", help="set an account's password")
    passwd.add_argument("name")
    passwd.add_argument("--password-env", metavar="VAR", help="read the password from $VAR")
    asub.add_parser("disable", help="refuse the account's sign-ins").add_argument("name")
    asub.add_parser("remove", help="delete the account").add_argument("name")

    accounts.set_defaults(run=_accounts)


def _password(args: argparse.Namespace) -> str:
    if args.password_env:
        value = os.environ.get(args.password_env)
        if not value:
            raise UsageError(f"environment variable {args.password_env} is not set")
        return value
    if not sys.stdin.isatty():
        raise UsageError("no terminal to prompt for the password: use --password-env VAR")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise UsageError("the passwords differ")
    return first


def _accounts(args: argparse.Namespace) -> int:
    try:
        from .._accounts import Accounts
    except ImportError as exc:  # pragma: no cover - the cli extra installs argon2-cffi
        raise UsageError(f"accounts need: pip install 'nowramp_auth[cli]' ({exc})") from None
    store = open_store(args)
    try:
        accounts = Accounts(store)
        action = args.action
        if action == "add":
            projects = None if args.operator else frozenset(args.projects)
            account = accounts.add(args.name, _password(args), projects)
            kind = "operator" if projects is None else "partner of " + " ".join(sorted(projects))
            print(f"Added account {printable(account.name)} ({printable(kind)}).")
        elif action == "list":
            found = accounts.list()
            if args.json:
                print(json.dumps([_account_dict(a) for a in found], indent=2))
            elif not found:
                print("No accounts.")
            else:
                rows = [
                    [
                        a.name,
                        "operator" if a.project_ids is None else " ".join(sorted(a.project_ids)),
                        "disabled" if a.disabled else "enabled",
                        when(a.created_at),
                    ]
                    for a in found
                ]
                print(table(["NAME", "PROJECTS", "STATUS", "CREATED"], rows))
        elif action == "passwd":
            accounts.set_password(args.name, _password(args))
            print(f"Password of {printable(args.name)} changed.")
        elif action == "disable":
            accounts.disable(args.name)
            print(f"Disabled {printable(args.name)}.")
        else:
            accounts.remove(args.name)
            print(f"Removed {printable(args.name)}.")
    finally:
        store.close()
    return 0


def _account_dict(account: Any) -> dict[str, Any]:
    projects = account.project_ids
    return {
        "name": account.name,
        "project_ids": sorted(projects) if projects is not None else None,
        "disabled": account.disabled,
        "created_at": account.created_at.isoformat(),
    }
