"""Key and session-token format: generate, parse, checksum, digest, hint.

Security model
--------------
A key is ``ramp_live_`` or ``ramp_test_`` followed by a base62 body of 54 characters::

    family(4) + key id(12) + secret(32) + checksum(6)

* ``family`` and ``key id`` together form the public key id (``key_<16 chars>``). A rotated
  key keeps its predecessor's family, so every record of one rotation lineage shares a Redis
  Cluster hash slot and rotation is one atomic server-side step.
* ``secret`` is 32 base62 characters from :mod:`secrets` (about 190 bits).
* ``checksum`` is CRC32 over everything before it (prefix included), in 6 base62 characters.
  A mistyped or made-up key is refused from the checksum alone, without touching the store.
  The checksum is not a security measure (anyone can compute it); the digest is.

Stores keep only a digest: SHA-256 of the whole key, or HMAC-SHA256 keyed with a server-side
pepper. Keys are high-entropy, so a fast digest is the right tool; a password hasher would
cost milliseconds per request for no gain. Digests are compared with
:func:`hmac.compare_digest`.

Widget session tokens use the same layout with the ``ramp_sess_`` prefix.

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import re
import secrets
import zlib
from collections.abc import Callable
from typing import Literal, NamedTuple, Protocol

__all__ = [
    "BODY_LENGTH",
    "KEY_PREFIXES",
    "SESSION_PREFIX",
    "Digest",
    "KeyType",
    "ParsedKey",
    "ParsedSessionToken",
    "digest_secret",
    "generate_key",
    "generate_session_token",
    "key_family",
    "make_hasher",
    "make_hint",
    "parse_key",
    "parse_session_token",
    "request_path_sha256",
]

KeyType = Literal["live", "test"]

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_SET = frozenset(BASE62)
_BASE62_INDEX = {char: index for index, char in enumerate(BASE62)}

KEY_PREFIXES: dict[str, KeyType] = {"ramp_live_": "live", "ramp_test_": "test"}
PREFIX_FOR_TYPE: dict[KeyType, str] = {"live": "ramp_live_", "test": "ramp_test_"}
SESSION_PREFIX = "ramp_sess_"
_PREFIX_LENGTH = 10

FAMILY_LENGTH = 4
ID_LENGTH = 12
SECRET_LENGTH = 32
CHECKSUM_LENGTH = 6
PUBLIC_ID_LENGTH = FAMILY_LENGTH + ID_LENGTH
BODY_LENGTH = PUBLIC_ID_LENGTH + SECRET_LENGTH + CHECKSUM_LENGTH
TOKEN_LENGTH = _PREFIX_LENGTH + BODY_LENGTH

# One C-level match checks prefix, length and alphabet before any Python-level work.
_KEY_SHAPE = re.compile(rf"ramp_(live|test)_[0-9A-Za-z]{{{BODY_LENGTH}}}")
_SESSION_SHAPE = re.compile(rf"ramp_sess_[0-9A-Za-z]{{{BODY_LENGTH}}}")

KEY_ID_PREFIX = "key_"
SESSION_ID_PREFIX = "sess_"


class ParsedKey(NamedTuple):
    """A key that passed the format and checksum checks (not yet the digest check)."""

    key_id: str
    key_type: KeyType


_new_tuple = tuple.__new__


class ParsedSessionToken(NamedTuple):
    """A session token that passed the format and checksum checks."""

    session_id: str


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


def _encode_base62(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 62)
        chars.append(BASE62[rem])
    return "".join(reversed(chars))


def _checksum(text: str) -> str:
    return _encode_base62(zlib.crc32(text.encode("ascii")), CHECKSUM_LENGTH)


def _build(prefix: str, public_id: str) -> str:
    head = prefix + public_id + _random_base62(SECRET_LENGTH)
    return head + _checksum(head)


def generate_key(key_type: KeyType, *, family: str | None = None) -> tuple[str, str]:
    """Return ``(plaintext key, key id)`` for a new key of ``key_type``.

    ``family`` (4 base62 characters) is kept by rotated keys; a new lineage gets a random one.
    """
    fam = family if family is not None else _random_base62(FAMILY_LENGTH)
    if len(fam) != FAMILY_LENGTH or not _BASE62_SET.issuperset(fam):
        raise ValueError("family must be 4 base62 characters")
    public_id = fam + _random_base62(ID_LENGTH)
    return _build(PREFIX_FOR_TYPE[key_type], public_id), KEY_ID_PREFIX + public_id


def generate_session_token(family: str) -> tuple[str, str]:
    """Return ``(plaintext token, session id)``; the session shares its parent's family."""
    public_id = family + _random_base62(ID_LENGTH)
    return _build(SESSION_PREFIX, public_id), SESSION_ID_PREFIX + public_id


def key_family(record_id: str) -> str:
    """The family (hash-slot tag) of a key id or session id."""
    public = record_id.split("_", 1)[1] if "_" in record_id else record_id
    return public[:FAMILY_LENGTH]


def _decode_base62(text: str) -> int:
    value = 0
    for char in text:
        value = value * 62 + _BASE62_INDEX[char]
    return value


# Every pair of base62 digits and its value: the checksum decodes in three lookups (this runs
# for every presented key, and for every made-up one).
_PAIRS = {a + b: _BASE62_INDEX[a] * 62 + _BASE62_INDEX[b] for a in BASE62 for b in BASE62}
_HEAD = TOKEN_LENGTH - CHECKSUM_LENGTH


def _checksum_holds(token: str) -> bool:
    """CRC32 of everything before the checksum equals the checksum (shape already checked).

    The checksum is not secret (anyone can compute it), so a plain comparison is fine."""
    pairs = _PAIRS
    value = (
        pairs[token[_HEAD : _HEAD + 2]] * 14_776_336  # 62 ** 4
        + pairs[token[_HEAD + 2 : _HEAD + 4]] * 3844  # 62 ** 2
        + pairs[token[_HEAD + 4 :]]
    )
    return zlib.crc32(token[:_HEAD].encode("ascii")) == value


def parse_key(api_key: str) -> ParsedKey | None:
    """Parse a presented API key; ``None`` when it is malformed or its checksum fails.

    Never raises, whatever the input.
    """
    if type(api_key) is not str or len(api_key) != TOKEN_LENGTH:
        return None
    if _KEY_SHAPE.fullmatch(api_key) is None or not _checksum_holds(api_key):
        return None
    key_type: KeyType = "live" if api_key[5] == "l" else "test"  # ramp_live_ / ramp_test_
    key_id = KEY_ID_PREFIX + api_key[_PREFIX_LENGTH : _PREFIX_LENGTH + PUBLIC_ID_LENGTH]
    return _new_tuple(ParsedKey, (key_id, key_type))  # NamedTuple's own __new__ is slow


def parse_session_token(token: str) -> ParsedSessionToken | None:
    """Parse a presented widget session token; ``None`` when malformed. Never raises."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH:
        return None
    if _SESSION_SHAPE.fullmatch(token) is None or not _checksum_holds(token):
        return None
    public_id = token[_PREFIX_LENGTH : _PREFIX_LENGTH + PUBLIC_ID_LENGTH]
    return ParsedSessionToken(SESSION_ID_PREFIX + public_id)


def digest_secret(token: str, pepper: bytes | None = None) -> str:
    """Hex digest of a whole key or token: SHA-256, or HMAC-SHA256 with ``pepper``."""
    return make_hasher(pepper)(token.encode("ascii")).hexdigest()


class Digest(Protocol):
    """What a hasher returns: an object whose ``hexdigest()`` is the digest."""

    def hexdigest(self) -> str:
        """The digest as 64 hex characters."""


def _request_path_sha256() -> Callable[[bytes], Digest]:
    # CPython's own SHA-256 (``_sha2`` from 3.12, ``_sha256`` before) gives the very digest
    # OpenSSL's does, at a lower cost per call inside a real request: OpenSSL's call path is
    # long, and once a framework's request handling has evicted it from the CPU caches it
    # cost about 1.9 µs per request under Flask against 0.4-1.2 µs for the builtin (a tie
    # under Starlette); benchmarks/hashing.py measures both. Where neither module exists
    # (other interpreters), hashlib's constructor serves.
    for module in ("_sha2", "_sha256"):
        try:
            builtin: Callable[[bytes], Digest] = importlib.import_module(module).sha256
        except (ImportError, AttributeError):
            continue
        if builtin(b"abc").hexdigest() == hashlib.sha256(b"abc").hexdigest():
            return builtin
    return hashlib.sha256


request_path_sha256 = _request_path_sha256()
"""SHA-256 of bytes as a hash object (``hexdigest()``), the cheapest on the request path."""


def make_hasher(pepper: bytes | None = None) -> Callable[[bytes], Digest]:
    """A function from the bytes of a key or token to its hash object:
    :data:`request_path_sha256` itself (no Python frame on the request path), or HMAC-SHA256
    keyed with ``pepper``, whose keyed state is set up once, here, and copied per call."""
    if not pepper:
        return request_path_sha256
    keyed = hmac.new(pepper, digestmod=hashlib.sha256)

    def peppered(data: bytes) -> Digest:
        mac = keyed.copy()
        mac.update(data)
        return mac

    return peppered


def make_hint(token: str) -> str:
    """Display hint: the prefix and the last 4 characters, e.g. ``ramp_live_…a1B2``."""
    return token[:_PREFIX_LENGTH] + "…" + token[-4:]
