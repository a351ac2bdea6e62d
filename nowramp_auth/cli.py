"""``nowramp-auth``: manage keys, sessions and the audit log; run the demo.

Security model: secrets are printed once, by ``keys create`` and ``keys rotate``; listings
never show them. ``sessions create`` reads the API key from an environment variable, never
from the command line (which lands in shell history and process listings). The pepper comes
from ``NOWRAMP_AUTH_PEPPER``. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

from . import __version__
from ._authenticator import Authenticator
from ._client_ip import parse_ip
from ._clock import utc_now
from ._durations import format_duration, parse_duration, parse_rate_limit
from ._errors import AuthError, ErrorCode
from ._manager import KeyManager
from ._models import AuditEvent, IssuedKey, KeyRecord
from .stores._errors import StoreUnavailable

__all__ = ["CLI_ACTOR", "main"]

CLI_ACTOR = "cli"
"""``AuditEvent.actor`` of every change made from the command line."""

ENV_URL = "NOWRAMP_AUTH_REDIS_URL"
ENV_PEPPER = "NOWRAMP_AUTH_PEPPER"
_UNSET: Any = object()


class UsageError(Exception):
    """Bad arguments: exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text[:40]!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {text[:40]} is outside 0-65535")
    return port


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nowramp-auth", description="Manage nowramp_auth API keys.")
    parser.add_argument("--version", action="version", version=f"nowramp-auth {__version__}")
    parser.add_argument("--redis-url", help=f"Redis URL (default: ${ENV_URL})")
    parser.add_argument("--cluster", action="store_true", help="the URL is a Redis Cluster node")
    parser.add_argument("--namespace", default="nowramp", help="Redis key prefix")
    top = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    keys = top.add_parser("keys", help="create, list, show, rotate, revoke, update keys")
    sub = keys.add_subparsers(dest="action", required=True, parser_class=_Parser)
    create = sub.add_parser("create", help="create a key (prints it once)")
    create.add_argument("--type", dest="key_type", choices=["live", "test"], default="test")
    create.add_argument("--scope", dest="scopes", action="append", required=True, metavar="S")
    create.add_argument("--name", default="")
    create.add_argument("--project")
    _add_key_options(create)
    create.add_argument("--json", action="store_true")

    listing = sub.add_parser("list", help="list keys (never shows a secret)")
    listing.add_argument("--project")
    listing.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="show one key")
    show.add_argument("key_id")
    show.add_argument("--json", action="store_true")

    rotate = sub.add_parser("rotate", help="issue a successor (prints it once)")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", default="24h", help="old key stays valid this long")
    rotate.add_argument("--json", action="store_true")

    revoke = sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    revoke.add_argument("--json", action="store_true")

    update = sub.add_parser("update", help="change scopes, allowlist, name, metadata, limits")
    update.add_argument("key_id")
    update.add_argument("--scope", dest="scopes", action="append", metavar="S")
    update.add_argument("--name")
    update.add_argument("--clear-allow-ips", action="store_true")
    update.add_argument("--no-rate-limit", action="store_true")
    update.add_argument("--no-expiry", action="store_true")
    _add_key_options(update)
    update.add_argument("--json", action="store_true")

    sessions = top.add_parser("sessions", help="create or revoke widget sessions")
    ssub = sessions.add_subparsers(dest="action", required=True, parser_class=_Parser)
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

    audit = top.add_parser("audit", help="recent audit events (newest first)")
    audit.add_argument("--key", dest="key_id")
    audit.add_argument("--type", dest="event_type")
    audit.add_argument("--since", help="e.g. 1h, 7d")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--json", action="store_true")

    accounts = top.add_parser("accounts", help="dashboard sign-in accounts")
    asub = accounts.add_subparsers(dest="action", required=True, parser_class=_Parser)
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

    demo = top.add_parser("demo", help="serve the demo partner API on the in-memory store")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=_port, default=8000)
    return parser


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-ip", dest="allow_ips", action="append", metavar="CIDR")
    parser.add_argument("--expires-in", metavar="DURATION", help="e.g. 90d")
    parser.add_argument("--metadata", action="append", metavar="K=V")
    parser.add_argument("--rate-limit", metavar="N/WINDOW", help="e.g. 100/60s")


def _metadata(items: list[str] | None) -> dict[str, str] | None:
    if items is None:
        return None
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--metadata takes KEY=VALUE, got {item!r}")
        result[key] = value
    return result


def _store(args: argparse.Namespace) -> Any:
    url = args.redis_url or os.environ.get(ENV_URL)
    if not url:
        raise UsageError(f"no store: pass --redis-url or set {ENV_URL}")
    try:
        from .stores.redis import RedisKeyStore
    except ImportError as exc:
        needed = f"the CLI needs: pip install 'nowramp_auth[cli]' ({exc.name} missing)"
        raise UsageError(needed) from None

    return RedisKeyStore.from_url(
        url,
        cluster=args.cluster,
        namespace=args.namespace,
        pepper=os.environ.get(ENV_PEPPER) or None,
        cache_ttl=0,
        invalidation=False,
    )


def _audit_log(store: Any) -> Any:
    from .stores.redis_audit import RedisStreamAuditLog

    return RedisStreamAuditLog(store)


# -- output ---------------------------------------------------------------------------------
def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "-"


def _printable(text: str) -> str:
    """``text`` with control and format characters escaped (``\\x1b``, ``\\u202e``): stored
    values (a request path in an audit event, a key's name) must not drive the terminal."""
    if text.isprintable():
        return text
    return "".join(
        ch.encode("unicode_escape").decode("ascii")
        if unicodedata.category(ch) in _UNPRINTABLE
        else ch
        for ch in text
    )


_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _key_rows(records: Sequence[KeyRecord]) -> str:
    now = utc_now()
    rows = [
        [
            r.id,
            r.key_type,
            r.name or "-",
            r.project_id or "-",
            " ".join(sorted(r.scopes)),
            r.hint,
            _when(r.created_at),
            _when(r.expires_at),
            _when(r.last_used_at),
            str(r.request_count),
            str(r.rate_limit or "-"),
            r.status(now),
        ]
        for r in records
    ]
    headers = [
        "ID",
        "TYPE",
        "NAME",
        "PROJECT",
        "SCOPES",
        "HINT",
        "CREATED",
        "EXPIRES",
        "LAST USED",
        "REQUESTS",
        "LIMIT",
        "STATUS",
    ]
    return _table(headers, rows)


def _key_detail(record: KeyRecord) -> str:
    fields = [
        ("id", record.id),
        ("type", record.key_type),
        ("name", record.name or "-"),
        ("project", record.project_id or "-"),
        ("scopes", " ".join(sorted(record.scopes))),
        ("allowed ips", " ".join(record.allowed_ips) or "any"),
        ("hint", record.hint),
        ("status", record.status(utc_now())),
        ("created", _when(record.created_at)),
        ("expires", _when(record.expires_at)),
        ("revoked", _when(record.revoked_at)),
        ("rotated from", record.rotated_from or "-"),
        ("rotated to", record.rotated_to or "-"),
        ("rate limit", str(record.rate_limit or "-")),
        ("metadata", json.dumps(dict(record.metadata)) if record.metadata else "-"),
        ("last used", _when(record.last_used_at)),
        ("requests", str(record.request_count)),
    ]
    return "\n".join(f"{k + ':':<14}{_printable(v)}" for k, v in fields)


def _print_issued(issued: IssuedKey, as_json: bool, verb: str) -> None:
    if as_json:
        print(json.dumps({"secret": issued.secret, "key": issued.key.to_dict()}, indent=2))
        return
    print(
        f"{verb} {issued.key.key_type} key {issued.key.id}"
        + (f" ({_printable(issued.key.name)})" if issued.key.name else "")
    )
    print()
    print(f"    {issued.secret}")
    print()
    print("Store it now: this key is shown only once and cannot be recovered.")


def _event_rows(events: Sequence[AuditEvent]) -> str:
    rows = [
        [
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.type,
            e.key_id or "-",
            e.code or "-",
            e.client_ip or "-",
            f"{e.method or ''} {e.path or ''}".strip() or "-",
            e.actor or "-",
        ]
        for e in events
    ]
    return _table(["TIME", "TYPE", "KEY", "CODE", "CLIENT", "REQUEST", "ACTOR"], rows)


# -- commands -------------------------------------------------------------------------------
def _keys(args: argparse.Namespace) -> int:
    store = _store(args)
    audit = _audit_log(store)
    manager = KeyManager(store, audit=audit, actor=CLI_ACTOR)
    try:
        return _keys_action(args, manager)
    finally:
        audit.close()
        store.close()


def _keys_action(args: argparse.Namespace, manager: KeyManager) -> int:
    action = args.action
    if action in ("create", "update"):
        expires = (utc_now() + parse_duration(args.expires_in)) if args.expires_in else _UNSET
        rate_limit = parse_rate_limit(args.rate_limit) if args.rate_limit else _UNSET
        metadata = _metadata(args.metadata)
    if action == "create":
        issued = manager.create(
            scopes=args.scopes,
            key_type=args.key_type,
            name=args.name,
            project_id=args.project,
            allowed_ips=args.allow_ips or [],
            expires_at=None if expires is _UNSET else expires,
            metadata=metadata,
            rate_limit=None if rate_limit is _UNSET else rate_limit,
        )
        _print_issued(issued, args.json, "Created")
    elif action == "list":
        records = manager.list(project_id=args.project)
        if args.json:
            print(json.dumps([r.to_dict() for r in records], indent=2))
        else:
            print(_key_rows(records) if records else "No keys.")
    elif action in ("show", "revoke"):
        record = manager.get(args.key_id) if action == "show" else manager.revoke(args.key_id)
        if args.json:
            print(json.dumps(record.to_dict(), indent=2))
        else:
            print(_key_detail(record) if action == "show" else f"Revoked {record.id}.")
    elif action == "rotate":
        issued = manager.rotate(args.key_id, grace=parse_duration(args.grace))
        old = manager.get(args.key_id)
        _print_issued(issued, args.json, "Rotated to")
        if not args.json:
            print(
                f"The old key {old.id} stays valid until {_when(old.expires_at)} UTC "
                f"({format_duration(old.expires_at - utc_now()) if old.expires_at else '-'})."
            )
    else:  # update
        changes: dict[str, Any] = {}
        if args.scopes:
            changes["scopes"] = args.scopes
        if args.name is not None:
            changes["name"] = args.name
        if args.clear_allow_ips or args.allow_ips:
            changes["allowed_ips"] = args.allow_ips or []
        if metadata is not None:
            changes["metadata"] = metadata
        if args.no_rate_limit or rate_limit is not _UNSET:
            changes["rate_limit"] = None if args.no_rate_limit else rate_limit
        if args.no_expiry or expires is not _UNSET:
            changes["expires_at"] = None if args.no_expiry else expires
        if not changes:
            raise UsageError("keys update: nothing to change")
        record = manager.update(args.key_id, **changes)
        print(json.dumps(record.to_dict(), indent=2) if args.json else _key_detail(record))
    return 0


def _sessions(args: argparse.Namespace) -> int:
    store = _store(args)
    audit = _audit_log(store)
    auth = Authenticator(store, audit=audit)
    try:
        if args.action == "create":
            api_key = os.environ.get(args.key_env)
            if not api_key:
                raise UsageError(f"environment variable {args.key_env} is not set")
            client_ip = args.client_ip
            if client_ip is not None and parse_ip(client_ip) is None:
                raise UsageError(f"--client-ip {_printable(client_ip[:60])!r} is not an IP address")
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
                    f"expires {_when(issued.expires_at)} UTC"
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


def _audit(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    store = _store(args)
    try:
        since = utc_now() - parse_duration(args.since) if args.since else None
        events = _audit_log(store).read(
            key_id=args.key_id, type=args.event_type, since=since, limit=args.limit
        )
    finally:
        store.close()
    if args.json:
        print(json.dumps([e.to_dict() for e in events], indent=2))
    else:
        print(_event_rows(events) if events else "No events.")
    return 0


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
        from ._accounts import Accounts
    except ImportError as exc:  # pragma: no cover - the cli extra installs argon2-cffi
        raise UsageError(f"accounts need: pip install 'nowramp_auth[cli]' ({exc})") from None
    store = _store(args)
    try:
        accounts = Accounts(store)
        action = args.action
        if action == "add":
            projects = None if args.operator else frozenset(args.projects)
            account = accounts.add(args.name, _password(args), projects)
            kind = "operator" if projects is None else "partner of " + " ".join(sorted(projects))
            print(f"Added account {_printable(account.name)} ({_printable(kind)}).")
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
                        _when(a.created_at),
                    ]
                    for a in found
                ]
                print(_table(["NAME", "PROJECTS", "STATUS", "CREATED"], rows))
        elif action == "passwd":
            accounts.set_password(args.name, _password(args))
            print(f"Password of {_printable(args.name)} changed.")
        elif action == "disable":
            accounts.disable(args.name)
            print(f"Disabled {_printable(args.name)}.")
        else:
            accounts.remove(args.name)
            print(f"Removed {_printable(args.name)}.")
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


def _demo(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .demo import build_demo, curl_lines
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``nowramp-auth``; returns the exit status."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        handler = {
            "keys": _keys,
            "sessions": _sessions,
            "audit": _audit,
            "accounts": _accounts,
            "demo": _demo,
        }
        return handler[args.command](args)
    except UsageError as exc:
        print(f"nowramp-auth: error: {_printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(
            "nowramp-auth: error: no such key, session or account: " + _printable(str(exc.args[0])),
            file=sys.stderr,
        )
        return 1
    except (ValueError, TypeError) as exc:
        print(f"nowramp-auth: error: {_printable(str(exc))}", file=sys.stderr)
        return 1
    except StoreUnavailable as exc:
        reason = str(exc)
        if reason.startswith("Redis unavailable"):
            reason = f"store unreachable ({reason})"
        print(f"nowramp-auth: error: {_printable(reason)}", file=sys.stderr)
        return 1
    except AuthError as exc:
        print(f"nowramp-auth: error: {exc.code.value}: {exc.message}", file=sys.stderr)
        return 1
    except OverflowError:  # a number no date or count can hold (guarded above; last resort)
        print("nowramp-auth: error: a number given is too large", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
