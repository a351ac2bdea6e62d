"""GitHub's signatures on secret-scanning alerts: ECDSA P-256 with SHA-256 over the raw body,
base64-encoded DER in ``GITHUB-PUBLIC-KEY-SIGNATURE``, made with the key that
``GITHUB-PUBLIC-KEY-IDENTIFIER`` names.

Security model: an alert acts (revokes keys) only when its signature verifies with a key we
hold for its identifier; anything else (no headers, bad base64, a key of another curve, a
signature over other bytes) is refused. By default GitHub's published keys are fetched from
its meta endpoint, cached, and fetched again at most once a minute, and only when an unknown
identifier arrives (so a flood of made-up identifiers costs one fetch a minute).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
import urllib.request
from collections.abc import Mapping
from typing import Any

__all__ = ["GITHUB_KEYS_URL", "PublicKeys"]

GITHUB_KEYS_URL = "https://api.github.com/meta/public_keys/secret_scanning"
REFETCH_AFTER = 60.0
_log = logging.getLogger("nowramp_auth.leaks")


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
    except ImportError:  # pragma: no cover - the leaks extra installs it
        raise ImportError(
            "secret scanning needs cryptography: pip install 'nowramp_auth[leaks]'"
        ) from None
    return hashes, serialization, ec


class PublicKeys:
    """The public keys alerts are checked with: fixed (``keys``), or GitHub's (fetched).

    Parameters:
        keys: identifier to PEM; when given, nothing is fetched.
        url: where to fetch keys from (GitHub's meta endpoint by default), JSON
            ``{"public_keys": [{"key_identifier": ..., "key": PEM}, ...]}``.
    """

    def __init__(self, keys: Mapping[str, str] | None = None, *, url: str = GITHUB_KEYS_URL):
        if not url.startswith(("https://", "http://")):
            raise ValueError("the public keys URL must be http(s)")
        hashes, serialization, ec = _crypto()
        self._hashes, self._serialization, self._ec = hashes, serialization, ec
        self._fixed = keys is not None
        self._url = url
        self._keys: dict[str, Any] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0
        """How many times keys were fetched (tests and operators read it)."""
        for identifier, pem in (keys or {}).items():
            self._keys[identifier] = self._load(pem)

    def _load(self, pem: str) -> Any:
        key = self._serialization.load_pem_public_key(pem.encode("ascii"))
        if not isinstance(key, self._ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise ValueError("secret scanning keys are ECDSA P-256 public keys")
        return key

    def _key(self, identifier: str) -> Any:
        key = self._keys.get(identifier)
        if key is not None or self._fixed:
            return key
        with self._lock:  # one fetch at a time, at most one a minute
            key = self._keys.get(identifier)
            recent = (
                self._fetched_at is not None and time.monotonic() - self._fetched_at < REFETCH_AFTER
            )
            if key is None and not recent:
                self._fetch()
                key = self._keys.get(identifier)
        return key

    def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        try:
            headers = {"Accept": "application/json"}
            request = urllib.request.Request(self._url, headers=headers)  # noqa: S310
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                listing = json.loads(answer.read(1024 * 1024))
            for entry in listing.get("public_keys", []):
                self._keys[str(entry["key_identifier"])] = self._load(str(entry["key"]))
        except Exception as exc:  # keep what we had: an alert with an unknown key is refused
            _log.warning("could not fetch secret-scanning public keys (%s)", type(exc).__name__)

    def verify(self, identifier: str | None, signature: str | None, body: bytes) -> bool:
        """Whether ``signature`` (base64 DER) over ``body`` verifies with the key named
        ``identifier``. Never raises for bad input; may fetch keys (blocking I/O)."""
        if not identifier or not signature or len(identifier) > 200 or len(signature) > 400:
            return False
        try:
            der = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        key = self._key(identifier)
        if key is None:
            return False
        from cryptography.exceptions import InvalidSignature

        try:
            key.verify(der, body, self._ec.ECDSA(self._hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True
