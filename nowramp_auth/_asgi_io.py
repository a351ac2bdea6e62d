"""ASGI I/O for the Starlette adapter: reading the credential headers and a small body, and
sending refusals (the standard answer of each code encoded once) and small JSON answers.

Security model: header values are untrusted text, read as latin-1 and judged by the core; a
refusal is always one of the catalogue's answers (nothing from the request is echoed).
"""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from ._errors import AuthError, ErrorCode
from ._http import MAX_WIDGET_BODY

__all__ = ["raw_headers", "read_body", "read_headers", "refuse", "refuse_downstream", "send_http"]


def read_headers(scope: Scope) -> tuple[list[str], list[str], list[str]]:
    api_keys: list[str] = []
    authorizations: list[str] = []
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            api_keys.append(value.decode("latin-1"))
        elif name == b"authorization":
            authorizations.append(value.decode("latin-1"))
        elif name == b"x-forwarded-for":
            forwarded.append(value.decode("latin-1"))
    return api_keys, authorizations, forwarded


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_WIDGET_BODY:
            return b"\x00" * (MAX_WIDGET_BODY + 1)  # parse_session_request refuses it
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def raw_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """ASGI header pairs: lower-case names, latin-1 values."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]


async def send_http(send: Send, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    raw = raw_headers(headers)
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


_PLAIN_REFUSALS: dict[ErrorCode, tuple[int, list[tuple[bytes, bytes]], bytes]] = {}


def _plain_refusal(code: ErrorCode) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    # The standard answer of each code, encoded for ASGI once.
    cached = _PLAIN_REFUSALS.get(code)
    if cached is None:
        error = AuthError(code)
        body = error.body()
        raw = [*raw_headers(error.headers()), (b"content-length", str(len(body)).encode())]
        cached = _PLAIN_REFUSALS[code] = (error.status_code, raw, body)
    return cached


async def refuse(scope: Scope, send: Send, error: AuthError) -> None:
    if scope["type"] == "http":
        if error.plain:
            status, raw, body = _plain_refusal(error.code)
            await send({"type": "http.response.start", "status": status, "headers": list(raw)})
            await send({"type": "http.response.body", "body": body})
            return
        await send_http(send, error.status_code, error.headers(), error.body())
    elif "websocket.http.response" in scope.get("extensions", {}):
        raw = raw_headers(error.headers())
        await send(
            {"type": "websocket.http.response.start", "status": error.status_code, "headers": raw}
        )
        await send({"type": "websocket.http.response.body", "body": error.body()})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": error.code.value})


async def refuse_downstream(scope: Scope, send: Send, error: AuthError) -> None:
    # The hot path does not wrap ``send`` to learn whether the response has started (that
    # would cost every request); a server refuses a second response start, and then the
    # original error goes on up, as it would have anyway.
    try:
        await refuse(scope, send, error)
    except Exception:
        raise error from None
