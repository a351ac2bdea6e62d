"""One way to call either adapter in-process, so one table of cases runs through both."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from starlette.testclient import TestClient

from nowramp_auth import Authenticator
from tests.apps import flask_app, litestar_app, quart_app, starlette_app


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str | None:
        try:
            return self.json["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None


class AsgiCaller:
    name = "starlette"
    build = staticmethod(starlette_app)

    def __init__(self, auth: Authenticator, **options: Any) -> None:
        self.app = self.build(auth, **options)
        self.clients: dict[str, TestClient] = {}

    def __call__(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        client_ip: str = "203.0.113.7",
    ) -> Answer:
        client = self.clients.get(client_ip)
        if client is None:
            client = self.clients[client_ip] = TestClient(
                self.app, client=(client_ip, 50000), raise_server_exceptions=False
            )
        encoded = [(k, v.encode("latin-1")) for k, v in headers or []]
        response = client.request(method, path, headers=encoded, content=body)
        return Answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.content,
        )


class WsgiCaller:
    name = "wsgi"

    def __init__(self, auth: Authenticator, **options: Any) -> None:
        self.app = flask_app(auth, **options)
        self.client = self.app.test_client()

    def __call__(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
        client_ip: str = "203.0.113.7",
    ) -> Answer:
        # Build the environ as a WSGI server would: repeated fields joined with ", ".
        joined: dict[str, str] = {}
        for name, value in headers or []:
            joined[name] = f"{joined[name]}, {value}" if name in joined else value
        # werkzeug's test client reads a path that starts with "//" as a URL with a host;
        # a server takes it as a path. Give the builder "/" and set the path as a server would.
        overrides: dict[str, str] = {}
        if path.startswith("//"):
            overrides["PATH_INFO"] = unquote(path.partition("?")[0]).encode().decode("latin-1")
            path = "/?" + path.partition("?")[2] if "?" in path else "/"
        response = self.client.open(
            path,
            method=method,
            headers=list(joined.items()),
            data=body,
            environ_base={"REMOTE_ADDR": client_ip},
            environ_overrides=overrides,
        )
        return Answer(
            response.status_code,
            {k.lower(): v for k, v in response.headers.items()},
            response.get_data(),
        )


class LitestarCaller(AsgiCaller):
    name = "litestar"
    build = staticmethod(litestar_app)


class QuartCaller(AsgiCaller):
    name = "quart"
    build = staticmethod(quart_app)


CALLERS = {"starlette": AsgiCaller, "wsgi": WsgiCaller}
# The fuzz suite also runs through the Litestar and Quart adapters (their apps serve the
# routes it calls: /quotes, the public /health and /docs*, the widget endpoint).
FUZZ_CALLERS = {**CALLERS, "litestar": LitestarCaller, "quart": QuartCaller}
