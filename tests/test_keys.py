"""Key format: generate, parse, checksum, digest, hint."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nowramp_auth._keys import (
    BASE62,
    TOKEN_LENGTH,
    digest_secret,
    generate_key,
    generate_session_token,
    key_family,
    make_hint,
    parse_key,
    parse_session_token,
    request_path_sha256,
)

LIVE, LIVE_ID = generate_key("live")
TEST, TEST_ID = generate_key("test")


def test_live_and_test_prefixes():
    assert LIVE.startswith("ramp_live_") and TEST.startswith("ramp_test_")
    assert parse_key(LIVE).key_type == "live"
    assert parse_key(TEST).key_type == "test"


def test_body_is_base62_and_long_enough():
    body = LIVE[len("ramp_live_") :]
    assert len(body) >= 40
    assert set(body) <= set(string.ascii_letters + string.digits)


def test_parse_returns_the_public_id():
    assert parse_key(LIVE).key_id == LIVE_ID
    assert LIVE_ID.startswith("key_")


def test_keys_are_unique():
    assert len({generate_key("test")[0] for _ in range(500)}) == 500


def test_rotated_key_keeps_the_family():
    secret, new_id = generate_key("live", family=key_family(LIVE_ID))
    assert key_family(new_id) == key_family(LIVE_ID)
    assert parse_key(secret).key_id == new_id


def test_bad_family_is_refused():
    with pytest.raises(ValueError):
        generate_key("live", family="ab")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("", id="empty"),
        pytest.param("ramp_live_", id="prefix-only"),
        pytest.param("ramp_prod_" + LIVE[10:], id="unknown-prefix"),
        pytest.param(LIVE[:-1], id="truncated"),
        pytest.param(LIVE + "a", id="extended"),
        pytest.param(" " + LIVE[1:], id="leading-space"),
        pytest.param(LIVE[:-1] + " ", id="trailing-space"),
        pytest.param(LIVE.upper(), id="upper-cased"),
        pytest.param(LIVE[:20] + "-" + LIVE[21:], id="non-base62"),
        pytest.param(LIVE[:20] + "é" + LIVE[21:], id="non-ascii"),
        pytest.param("ramp_sess_" + LIVE[10:], id="session-prefix"),
        pytest.param("ramp_test_" + LIVE[10:], id="type-swapped"),
    ],
)
def test_malformed_keys_do_not_parse(value: str):
    assert parse_key(value) is None


@given(st.data())
def test_every_single_character_change_is_refused(data: st.DataObject):
    key = TEST
    index = data.draw(st.integers(0, len(key) - 1))
    replacement = data.draw(st.sampled_from(BASE62 + "_-+/=. ").filter(lambda c: c != key[index]))
    mutated = key[:index] + replacement + key[index + 1 :]
    assert parse_key(mutated) is None


@given(st.integers(1, TOKEN_LENGTH - 1))
def test_every_truncation_is_refused(length: int):
    assert parse_key(TEST[:length]) is None


@given(st.text(alphabet=BASE62, min_size=1, max_size=20))
def test_every_extension_is_refused(suffix: str):
    assert parse_key(TEST + suffix) is None


@given(st.integers(0, TOKEN_LENGTH - 1))
def test_every_case_flip_is_refused(index: int):
    char = TEST[index]
    flipped = char.swapcase()
    if flipped == char:
        return  # digits and '_' have no case
    assert parse_key(TEST[:index] + flipped + TEST[index + 1 :]) is None


@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(value: str):
    assert parse_key(value) is None or value.startswith(("ramp_live_", "ramp_test_"))
    parse_session_token(value)


def test_session_tokens_parse_only_as_sessions():
    token, session_id = generate_session_token(key_family(LIVE_ID))
    assert token.startswith("ramp_sess_")
    assert parse_session_token(token).session_id == session_id
    assert parse_key(token) is None
    assert parse_session_token(LIVE) is None


def test_digest_is_sha256_or_hmac_with_pepper():
    import hashlib
    import hmac

    assert digest_secret(LIVE) == hashlib.sha256(LIVE.encode()).hexdigest()
    peppered = digest_secret(LIVE, b"pepper")
    assert peppered == hmac.new(b"pepper", LIVE.encode(), "sha256").hexdigest()
    assert peppered != digest_secret(LIVE)


@given(st.binary(max_size=300))
def test_request_path_sha256_is_sha256(data: bytes):
    import hashlib

    assert request_path_sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()


def test_hint_shows_prefix_and_last_four_only():
    hint = make_hint(LIVE)
    assert hint == "ramp_live_…" + LIVE[-4:]
    assert LIVE[10:-4] not in hint
