"""The example apps the README quotes work as written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest
from starlette.testclient import TestClient

from tests.redis_servers import free_port
from tests.servers import ROOT, serve, wait_until_up

pytestmark = pytest.mark.smoke  # also run against the installed wheel


def test_fastapi_example():
    from examples import fastapi_app

    key = fastapi_app.manager.create(scopes=["quotes:read"], project_id="p1").secret
    client = TestClient(fastapi_app.app)
    assert client.get("/health").status_code == 200
    ok = client.get("/quotes/7?currency=EUR", headers={"X-API-Key": key})
    assert ok.status_code == 200 and ok.json()["currency"] == "EUR"
    assert client.get("/quotes/7").json()["error"]["code"] == "MISSING_API_KEY"
    assert client.get("/orders", headers={"X-API-Key": key}).status_code == 403
    assert "ApiKeyAuth" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_flask_example():
    from examples import flask_app

    key = flask_app.manager.create(scopes=["quotes:read"]).secret
    client = flask_app.app.test_client()
    assert client.get("/health").status_code == 200
    ok = client.get("/quotes", headers={"X-API-Key": key})
    assert ok.status_code == 200 and json.loads(ok.data)["quotes"] == []
    refused = client.post("/orders", headers={"X-API-Key": key})
    assert refused.status_code == 403
    assert json.loads(refused.data)["error"]["code"] == "INSUFFICIENT_PERMISSIONS"


DJANGO_EXAMPLE_CHECK = """
import json, os
os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_project.settings"
import django
django.setup()
from django.test import Client
from examples.django_project import urls
key = urls.manager.create(scopes=["quotes:read", "orders:read"], project_id="p1").secret
client = Client()
assert client.get("/health").status_code == 200
ok = client.get("/quotes", headers={"X-API-Key": key})
assert ok.status_code == 200 and ok.json()["key_id"], ok.content
assert client.get("/quotes").json()["error"]["code"] == "MISSING_API_KEY"
orders = client.get("/orders", headers={"X-API-Key": key})
assert orders.status_code == 200 and orders.json()["project_id"] == "p1", orders.content
refused = client.post("/orders", headers={"X-API-Key": key})
assert refused.status_code == 403, refused.content
assert refused.json()["error"]["required_scopes"] == ["orders:write"]
print("django example ok")
"""


def test_django_example():
    # Its own process: Django's settings are configured once per process.
    result = subprocess.run(
        [sys.executable, "-c", DJANGO_EXAMPLE_CHECK],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert "django example ok" in result.stdout, result.stdout + result.stderr


def test_django_example_under_uvicorn():
    with serve(
        [
            "uvicorn",
            "examples.django_project.asgi:application",
            "--no-proxy-headers",
            "--port",
            "{port}",
        ]
    ) as base:
        refused = httpx.get(base + "/quotes", headers={"X-Forwarded-For": "192.0.2.7"})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "MISSING_API_KEY"


METRICS_EXAMPLE_CHECK = """
import sys
from examples import {module} as example
key = example.manager.create(scopes=["quotes:read"]).secret
{client}
assert get("/quotes", {{"X-API-Key": key}}) == 200
assert get("/quotes", {{}}) == 401
text = get("/metrics", {{}}, text=True)
assert 'nowramp_auth_requests_total{{key_type="test",result="ok"}} 1.0' in text, text
assert 'nowramp_auth_requests_total{{key_type="unknown",result="MISSING_API_KEY"}} 1.0' in text
assert key not in text and "/quotes" not in text
print("metrics example ok")
"""
STARLETTE_CLIENT = """
from starlette.testclient import TestClient

client = TestClient(example.app)
def get(path, headers, text=False):
    response = client.get(path, headers=headers)
    return response.text if text else response.status_code
"""
FLASK_CLIENT = """
client = example.app.test_client()
def get(path, headers, text=False):
    response = client.get(path, headers=headers)
    return response.get_data(as_text=True) if text else response.status_code
"""


@pytest.mark.parametrize(
    ("module", "client"),
    [("metrics_starlette", STARLETTE_CLIENT), ("metrics_flask", FLASK_CLIENT)],
)
def test_metrics_examples(module: str, client: str):
    # Each in its own process: both register with prometheus_client's global registry.
    script = METRICS_EXAMPLE_CHECK.format(module=module, client=client)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert "metrics example ok" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("module", ["examples.litestar_app", "examples.quart_app"])
def test_litestar_and_quart_examples_under_uvicorn(module: str):
    args = ["uvicorn", f"{module}:app", "--host", "127.0.0.1", "--port", "{port}"]
    args += ["--log-level", "warning", "--no-proxy-headers"]
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", *[a.format(port=port) for a in args]],
        cwd=ROOT,
        # Unbuffered: the test reads the key line the example prints before it serves.
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        key = line.split("example key:", 1)[1].strip()
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, process)
        quotes = base + ("/quotes/7" if module.endswith("litestar_app") else "/quotes")
        assert httpx.get(quotes, headers={"X-API-Key": key}).status_code == 200
        refused = httpx.get(base + "/orders", headers={"X-API-Key": key})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
        assert httpx.get(quotes).json()["error"]["code"] == "MISSING_API_KEY"
    finally:
        process.terminate()
        process.wait(timeout=10)
