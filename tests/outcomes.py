"""What an authenticator answers a key, as a test compares it: ``"ok"`` or the error code."""

from __future__ import annotations

import asyncio

from nowramp_auth import Authenticator, AuthError


def outcome(auth: Authenticator, secret: str) -> str:
    """One request: ``"ok"`` or the refusal's code (``"RATE_LIMITED"``, ...)."""
    try:
        auth.authenticate(secret)
        return "ok"
    except AuthError as error:
        return error.code.value


def outcomes(auth: Authenticator, secret: str, count: int) -> list[str]:
    """``count`` requests one after the other."""
    return [outcome(auth, secret) for _ in range(count)]


def burst(auth: Authenticator, secrets: list[str]) -> list[str]:
    """One concurrent request per item of ``secrets`` (``authenticate_async``, gathered on
    one event loop), in order."""

    async def one(secret: str) -> str:
        try:
            await auth.authenticate_async(secret)
            return "ok"
        except AuthError as error:
            return error.code.value

    async def run() -> list[str]:
        return list(await asyncio.gather(*(one(secret) for secret in secrets)))

    return asyncio.run(run())
