"""``nowramp-auth sessions ...``: create and revoke widget sessions.

Security model: the API key is read from an environment variable (``--key-env``), never from
the command line, which lands in shell history and process listings.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from .._authenticator import Authenticator
from .._client_ip import parse_ip
from .._clock import utc_now
from .._errors import AuthError, ErrorCode
from .._models import AuditEvent
from ._common import CLI_ACTOR, Parser, UsageError, audit_log, open_store, printable, when

__all__ = ["register"]


def register(top: Any) -> None:
    """Add the ``sessions`` command group."""
    sessions = top.add_parser("sessions", help="create or revoke widget sessions")
    ssub = sessions.add_subparsers(dest="action", required=True, parser_class=Parser)
    screate = ssub.add_parser("create", help="create a widget session")
    screate.add_argument(
        "--key-env", required=True, metavar="VAR", help="environment variable holding the API key"
    )
    screate.add_argument("--project", required=True)
    screate.add_argument("--customer")
    screate.add_argument("--scope", dest="scopes", action="append", metavar="S")
    screate.add_argument(
        "--client-ip",
        metavar="ADDRESS",
        help="the address the session is created from (for keys with an IP allowlist)",
    )
    screate.add_argument("--json", action="store_true")
    srevoke = ssub.add_parser("revoke", help="revoke a session by id (sess_...) or token")
    srevoke.add_argument("session")

    sessions.set_defaults(run=_sessions)


def _sessions(args: argparse.Namespace) -> int:
    store = open_store(args)
    audit = audit_log(store)
    auth = Authenticator(store, audit=audit)
    try:
        if args.action == "create":
            api_key = os.environ.get(args.key_env)
            if not api_key:
                raise UsageError(f"environment variable {args.key_env} is not set")
            client_ip = args.client_ip
            if client_ip is not None and parse_ip(client_ip) is None:
                raise UsageError(f"--client-ip {printable(client_ip[:60])!r} is not an IP address")
            try:
                issued = auth.create_session(
                    api_key,
                    project_id=args.project,
                    customer_id=args.customer,
                    scopes=args.scopes,
                    client_ip=client_ip,
                    actor=CLI_ACTOR,
                )
            except AuthError as exc:
                if exc.code is ErrorCode.IP_NOT_ALLOWED and client_ip is None:
                    raise UsageError(
                        "the key has an IP allowlist: give --client-ip with an address inside it"
                    ) from None
                raise
            if args.json:
                print(json.dumps({**issued.to_dict(), "session_id": issued.session_id}, indent=2))
            else:
                print(
                    f"Session {issued.session_id} for project {issued.project_id}, "
                    f"scopes {' '.join(sorted(issued.scopes)) or '-'}, "
                    f"expires {when(issued.expires_at)} UTC"
                )
                print(issued.token)
        else:
            target = args.session
            if target.startswith("ramp_sess_"):
                record = auth.revoke_session(target, actor=CLI_ACTOR)
            elif target.startswith("sess_"):
                found = store.revoke_session(target, utc_now())
                if found is None:
                    raise KeyError(target)
                record = found
                audit.emit(
                    AuditEvent(
                        "session.revoked",
                        utc_now(),
                        key_id=record.key_id,
                        session_id=record.id,
                        project_id=record.project_id,
                        actor=CLI_ACTOR,
                    )
                )
            else:
                raise UsageError("sessions revoke takes a session id (sess_...) or token")
            print(f"Revoked session {record.id}.")
        return 0
    finally:
        audit.close()
        store.close()
