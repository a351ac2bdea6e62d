"""Core: one authenticate() call on the memory store, a bad-checksum key, the digest alone,
and what a password hasher (PBKDF2-SHA256, 600k iterations) would cost instead."""

from __future__ import annotations

import contextlib
import hashlib

from nowramp_auth import Authenticator, AuthError, KeyManager, MemoryKeyStore

from ._rounds import interleaved


def run(*, rounds: int, iterations: int) -> dict[str, float]:
    store = MemoryKeyStore()
    issued = KeyManager(store).create(scopes=["quotes:read"], allowed_ips=["127.0.0.0/8"])
    auth = Authenticator(store)
    secret = issued.secret
    typo = secret[:-1] + ("A" if secret[-1] != "A" else "B")

    def authenticate(n: int) -> None:
        for _ in range(n):
            auth.authenticate(secret, client_ip="127.0.0.1", required_scopes=("quotes:read",))

    def bad_checksum(n: int) -> None:
        for _ in range(n):
            with contextlib.suppress(AuthError):
                auth.authenticate(typo)

    def sha256(n: int) -> None:
        data = secret.encode()
        for _ in range(n):
            hashlib.sha256(data).hexdigest()

    def pbkdf2(n: int) -> None:
        for _ in range(n):
            hashlib.pbkdf2_hmac("sha256", secret.encode(), b"salt" * 4, 600_000)

    fast = interleaved(
        {
            "authenticate() memory store": authenticate,
            "bad checksum (refused)": bad_checksum,
            "SHA-256 digest alone": sha256,
        },
        rounds=rounds,
        iterations=iterations,
    )
    slow = interleaved(
        {"PBKDF2-SHA256 600k (password hasher)": pbkdf2},
        rounds=max(1, min(rounds, 3)),
        iterations=1,
    )
    return {**fast, **slow}
