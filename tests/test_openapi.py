"""OpenAPI that documents every refusal: ``document_auth`` on a FastAPI app, checked by hand
and by a third-party fuzzer (schemathesis, default checks) against the example app served by
uvicorn, once with a valid key and once without any."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from starlette.testclient import TestClient

from nowramp_auth import ErrorCode, Principal
from nowramp_auth.fastapi import document_auth, scopes
from nowramp_auth.starlette import ApiKeyMiddleware, require_scopes
from nowramp_auth.testing import auth_kit
from tests.redis_servers import free_port
from tests.servers import ROOT, wait_until_up

PUBLIC = ["/health", "/docs*", "/openapi.json"]


def make_app() -> tuple[FastAPI, TestClient, str]:
    kit = auth_kit()
    app = FastAPI()
    app.add_middleware(ApiKeyMiddleware, authenticator=kit.authenticator, public_paths=PUBLIC)
    document_auth(app, public_paths=PUBLIC)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/plain")  # protected by the middleware alone: no guard, no dependency
    async def plain() -> dict[str, str]:
        return {"ok": "yes"}

    @app.post("/orders")
    @require_scopes("orders:write")
    async def orders() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/wallets")
    async def wallets(principal: Principal = Depends(scopes("wallets:read"))) -> dict[str, str]:
        return {"key_id": principal.key_id}

    return app, TestClient(app), kit.key("quotes:read").secret


def test_protected_operations_document_every_refusal():
    app, client, _ = make_app()
    schema = client.get("/openapi.json").json()
    assert schema == app.openapi()  # built once, documented once
    operations = {(path, m): op for path, item in schema["paths"].items() for m, op in item.items()}
    assert set(operations) == {
        ("/health", "get"),
        ("/plain", "get"),
        ("/orders", "post"),
        ("/wallets", "get"),
    }
    for (path, _), operation in operations.items():
        documented = set(operation["responses"])
        if path == "/health":
            assert not documented & {"401", "403", "429", "503"}
            assert "security" not in operation
            continue
        assert {"401", "403", "429", "503"} <= documented, path
        assert operation["security"].count({"ApiKeyAuth": []}) == 1, path
        for status in ("401", "403", "429", "503"):
            body = operation["responses"][status]["content"]["application/json"]["schema"]
            assert body == {"$ref": "#/components/schemas/ErrorResponse"}
    error = schema["components"]["schemas"]["ErrorResponse"]["properties"]["error"]
    assert set(error["properties"]["code"]["enum"]) == {code.value for code in ErrorCode}
    assert set(error["required"]) == {"code", "message", "solution"}
    assert "required_scopes" in error["properties"]
    scheme = schema["components"]["securitySchemes"]["ApiKeyAuth"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-API-Key"}


def test_refusal_bodies_match_the_documented_schema():
    app, client, secret = make_app()
    error_schema = app.openapi()["components"]["schemas"]["ErrorResponse"]
    properties = error_schema["properties"]["error"]["properties"]
    answers = [
        client.get("/plain"),
        client.get("/plain", headers={"X-API-Key": "nope"}),
        client.post("/orders", headers={"X-API-Key": secret}),
        client.get("/wallets", headers={"X-API-Key": secret}),
    ]
    assert [a.status_code for a in answers] == [401, 401, 403, 403]
    for answer in answers:
        error = answer.json()["error"]
        assert set(error) <= set(properties)
        assert error["code"] in properties["code"]["enum"]


# The examples with an OpenAPI document, and where they serve it.
DOCUMENTED_EXAMPLES = {
    "fastapi": ("examples.fastapi_app:app", "/openapi.json"),
    "litestar": ("examples.litestar_app:app", "/schema/openapi.json"),
}


@pytest.fixture(scope="module", params=sorted(DOCUMENTED_EXAMPLES))
def example_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``uvicorn examples.<framework>_app:app --no-proxy-headers`` (the README's command): the
    URL of its OpenAPI document and the key it printed."""
    app, document = DOCUMENTED_EXAMPLES[request.param]
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", app, "--no-proxy-headers"]
    process = subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        # Unbuffered: the fixture reads the key line the example prints before it serves.
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"(ramp_test_\w+)", first)
        assert found, first
        # Keep reading what it prints, so a full pipe never stalls it.
        threading.Thread(target=process.stdout.read, daemon=True).start()
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, process)
        yield base + document, found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.parametrize("with_key", [True, False], ids=["valid-key", "no-key"])
def test_schemathesis_finds_nothing(
    example_server: tuple[str, str], with_key: bool, tmp_path: Path
):
    document, secret = example_server
    command = [str(Path(sys.executable).parent / "schemathesis"), "run", document]
    command += ["--seed", "1", "--max-examples", "100"]
    if with_key:
        command += ["-H", f"X-API-Key: {secret}"]
    # cwd: schemathesis keeps a cache (.schemathesis/) in its working directory
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "failure" not in output.lower(), output
    counts = re.search(r"(\d+) generated, (\d+) passed", output)
    assert counts and counts[1] == counts[2], output  # every generated case passed
    # With a key: schemathesis may warn about an operation the example's key may not call
    # (the Litestar example's /orders: its scope refusal is what the example shows), nothing
    # else.
    if with_key:
        assert "No issues found" in output or "403 Forbidden (1 operation)" in output, output


STARLETTE_ONLY = """
import inspect, sys
from nowramp_auth.starlette import require_scopes

@require_scopes("quotes:read")
async def before(request): ...

assert "fastapi" not in sys.modules and "pydantic" not in sys.modules, "imported FastAPI"
assert "nowramp_api_key" not in inspect.signature(before).parameters
import fastapi

@require_scopes("quotes:read")
async def after(request): ...

assert "nowramp_api_key" in inspect.signature(after).parameters
print("ok")
"""


def test_a_starlette_app_never_imports_fastapi():
    # FastAPI is installed here; a Starlette app that uses require_scopes still never
    # imports it (nor pydantic), and a FastAPI app, which imports it first, gets the scheme.
    result = subprocess.run(
        [sys.executable, "-c", STARLETTE_ONLY], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
