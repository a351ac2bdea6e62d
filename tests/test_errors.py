"""The error catalogue: one table of codes, statuses, messages and solutions."""

from __future__ import annotations

import json

import pytest

from nowramp_auth import AuthError, ErrorCode

EXPECTED = {
    "MISSING_API_KEY": 401,
    "INVALID_API_KEY": 401,
    "API_KEY_EXPIRED": 401,
    "INSUFFICIENT_PERMISSIONS": 403,
    "IP_NOT_ALLOWED": 403,
    "INVALID_SESSION_TOKEN": 401,
    "SESSION_EXPIRED": 401,
    "INVALID_REQUEST": 400,
    "RATE_LIMITED": 429,
    "CREDITS_EXHAUSTED": 429,
    "AUTH_UNAVAILABLE": 503,
}


def test_every_code_is_in_the_table():
    assert {c.value for c in ErrorCode} == set(EXPECTED)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_error_shape(code: ErrorCode):
    error = AuthError(code)
    assert error.status_code == EXPECTED[code.value]
    body = json.loads(error.body())
    assert set(body) == {"error"}
    assert body["error"]["code"] == code.value
    assert body["error"]["message"] and body["error"]["solution"]
    headers = dict(error.headers())
    assert headers["Content-Type"] == "application/json"
    assert ("WWW-Authenticate" in headers) == (error.status_code == 401)


def test_code_is_a_str_enum():
    assert ErrorCode.INVALID_API_KEY == "INVALID_API_KEY"
    assert str(ErrorCode.INVALID_API_KEY) == "INVALID_API_KEY"


def test_solutions_follow_the_guide():
    assert "X-API-Key" in AuthError(ErrorCode.MISSING_API_KEY).solution
    assert "key value" in AuthError(ErrorCode.INVALID_API_KEY).solution
    assert "new key" in AuthError(ErrorCode.API_KEY_EXPIRED).solution
    assert "permission" in AuthError(ErrorCode.INSUFFICIENT_PERMISSIONS).solution


def test_retry_after_header():
    headers = dict(AuthError(ErrorCode.AUTH_UNAVAILABLE, retry_after=1).headers())
    assert headers["Retry-After"] == "1"
