"""The plaintext key never reaches a repr, an exception, an audit event, a log line or an
error body."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowramp_auth import AuthError, LoggingAuditLog
from nowramp_auth._credentials import read_credential
from nowramp_auth.testing import auth_kit
from tests.conftest import mistype
from tests.harness import CALLERS


def fragments(secret: str) -> list[str]:
    body = secret[10:]
    return [secret, body, body[16:48], body[16:28], body[36:48]]


def assert_clean(text: str, secrets: list[str]) -> None:
    for secret in secrets:
        for fragment in fragments(secret):
            assert fragment not in text, "secret fragment leaked"


def test_reprs_and_exceptions(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    kit = auth_kit(audit=LoggingAuditLog(), audit_successes=True)
    issued = kit.key("quotes:read", project_id="p1")
    session = kit.authenticator.create_session(issued.secret, project_id="p1")
    secrets = [issued.secret, session.token]
    texts = [
        repr(issued),
        str(issued),
        repr(issued.key),
        repr(session),
        str(session),
        repr(kit.store.get_key(issued.key.id)),
        repr(kit.store.get_session(session.session_id)),
        repr(read_credential([issued.secret], [])),
    ]
    for attempt in (mistype(issued.secret), issued.secret, session.token):
        try:
            kit.authenticator.authenticate(attempt, required_scopes=["orders:read"])
        except AuthError as error:
            texts += [repr(error), str(error), json.dumps(error.to_dict()), str(error.headers())]
    texts += [json.dumps(e.to_dict()) for e in kit.audit.events]
    assert kit.authenticator.audit.flush()
    texts.append(caplog.text)
    assert "auth.failed" in caplog.text
    assert_clean("\n".join(texts), secrets)


@pytest.mark.parametrize("adapter", sorted(CALLERS))
@given(noise=st.text(min_size=1, max_size=8))
def test_error_bodies_never_echo_the_presented_value(adapter: str, noise: str):
    kit = auth_kit()
    call = CALLERS[adapter](kit.authenticator)
    issued = kit.key("quotes:read")
    near_miss = issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")  # never valid
    try:
        presented = (near_miss + noise).encode("latin-1").decode("latin-1")
    except UnicodeEncodeError:
        presented = near_miss
    presented = presented.replace("\r", "").replace("\n", "")
    for headers in ([("X-API-Key", presented)], [("Authorization", f"Bearer {presented}")]):
        answer = call("GET", "/orders", headers)
        assert answer.status in (401, 403)
        assert_clean(answer.body.decode(), [issued.secret])
        assert presented.encode("latin-1") not in answer.body
