"""One table of authentication cases, run against any adapter's app, so adapters can be held
to identical refusals: the same status, the same JSON body, the same challenge header.

Every app under test serves ``GET /quotes`` (``quotes:read``), ``POST /orders``
(``orders:write``) and ``GET /whoami`` (no scope), and ``POST /widget/sessions``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from nowramp_auth import KeyManager, RateLimit
from nowramp_auth._keys import generate_key

Send = Callable[[str, str, list[tuple[str, str]], bytes | None], tuple[int, dict[str, str], bytes]]
"""``send(method, path, headers, body) -> (status, lower-case headers, body)``."""


@dataclass(frozen=True)
class Outcome:
    """What a case answered: status, the JSON body of a refusal (``None`` for a success),
    and the challenge and retry headers."""

    status: int
    body: Any
    challenge: str | None
    retry_after: str | None


def _outcome(answer: tuple[int, dict[str, str], bytes]) -> Outcome:
    status, headers, body = answer
    refusal = json.loads(body) if status >= 400 else None
    return Outcome(status, refusal, headers.get("www-authenticate"), headers.get("retry-after"))


def run_cases(manager: KeyManager, send: Send) -> dict[str, Outcome]:
    """Make fresh keys with ``manager`` and run every case through ``send``."""
    reader = manager.create(scopes=["quotes:read"], project_id="p1")
    writer = manager.create(scopes=["quotes:read", "orders:write"], project_id="p1")
    fenced = manager.create(scopes=["quotes:read"], allowed_ips=["192.0.2.0/24"])
    revoked = manager.create(scopes=["quotes:read"])
    manager.revoke(revoked.key.id)
    expired = manager.create(scopes=["quotes:read"])
    manager.rotate(expired.key.id, grace=timedelta(0))
    limited = manager.create(scopes=["quotes:read"], rate_limit=RateLimit(2, timedelta(hours=1)))
    unknown, _ = generate_key("test")
    flipped = reader.secret[:-1] + ("A" if reader.secret[-1] != "A" else "B")

    def key(secret: str) -> list[tuple[str, str]]:
        return [("X-API-Key", secret)]

    outcomes: dict[str, Outcome] = {}

    def case(name: str, method: str, path: str, headers: list[tuple[str, str]]) -> None:
        outcomes[name] = _outcome(send(method, path, headers, None))

    case("ok", "GET", "/quotes", key(reader.secret))
    case("ok-no-scope-route", "GET", "/whoami", key(reader.secret))
    case("ok-write", "POST", "/orders", key(writer.secret))
    case("missing", "GET", "/quotes", [])
    case("empty", "GET", "/quotes", key(""))
    case("garbage", "GET", "/quotes", key("nope"))
    case("bad-checksum", "GET", "/quotes", key(flipped))
    case("unknown", "GET", "/quotes", key(unknown))
    case("revoked", "GET", "/quotes", key(revoked.secret))
    case("expired", "GET", "/quotes", key(expired.secret))
    case("ip", "GET", "/quotes", key(fenced.secret))
    case("scopes", "POST", "/orders", key(reader.secret))
    case("several", "GET", "/quotes", key(reader.secret) + key(reader.secret))
    case("key-as-bearer", "GET", "/quotes", [("Authorization", f"Bearer {reader.secret}")])
    case("bad-bearer", "GET", "/quotes", [("Authorization", "Bearer ramp_sess_nope")])
    created = send("POST", "/widget/sessions", key(reader.secret), b'{"project_id": "p1"}')
    outcomes["session-created"] = Outcome(created[0], None, None, None)
    token = json.loads(created[2])["session_token"] if created[0] == 201 else "none"
    case("session", "GET", "/quotes", [("Authorization", f"Bearer {token}")])
    case("session-as-key", "GET", "/quotes", key(token))
    bad_body = send("POST", "/widget/sessions", key(reader.secret), b"{not json")
    outcomes["session-bad-body"] = _outcome(bad_body)
    # The commit point: scope refusals spend nothing, so both allowed requests get through.
    for n in range(3):
        case(f"limited-scope-refusal-{n}", "POST", "/orders", key(limited.secret))
    case("limited-1", "GET", "/quotes", key(limited.secret))
    case("limited-2", "GET", "/quotes", key(limited.secret))
    case("limited-3", "GET", "/quotes", key(limited.secret))
    return outcomes


EXPECTED = {
    "ok": 200,
    "ok-no-scope-route": 200,
    "ok-write": 201,
    "missing": 401,
    "empty": 401,
    "garbage": 401,
    "bad-checksum": 401,
    "unknown": 401,
    "revoked": 401,
    "expired": 401,
    "ip": 403,
    "scopes": 403,
    "several": 401,
    "key-as-bearer": 401,
    "bad-bearer": 401,
    "session-created": 201,
    "session": 200,
    "session-as-key": 401,
    "session-bad-body": 400,
    "limited-scope-refusal-0": 403,
    "limited-scope-refusal-1": 403,
    "limited-scope-refusal-2": 403,
    "limited-1": 200,
    "limited-2": 200,
    "limited-3": 429,
}
"""The status each case must get, on every adapter."""


def assert_expected(outcomes: dict[str, Outcome]) -> None:
    """Every case got its expected status; every 401 a challenge; the 429 a Retry-After."""
    got = {name: o.status for name, o in outcomes.items()}
    wrong = {
        name: (got.get(name), want) for name, want in EXPECTED.items() if got.get(name) != want
    }
    assert not wrong and set(got) == set(EXPECTED), f"(got, expected): {wrong}"
    for name, outcome in outcomes.items():
        if outcome.status == 401:
            assert outcome.challenge, name
    assert outcomes["limited-3"].retry_after


def assert_same_refusals(ours: dict[str, Outcome], reference: dict[str, Outcome]) -> None:
    """Identical statuses, refusal bodies and challenges (successes differ by app)."""
    assert set(ours) == set(reference)
    for name in reference:
        mine, theirs = ours[name], reference[name]
        assert (mine.status, mine.body, mine.challenge) == (
            theirs.status,
            theirs.body,
            theirs.challenge,
        ), f"{name}: {mine} != {theirs}"
