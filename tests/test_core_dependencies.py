"""The core imports nothing beyond the standard library (frameworks are extras)."""

from __future__ import annotations

import subprocess
import sys

from tests.servers import ROOT

BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"starlette", "werkzeug", "redis", "cachetools", "fastapi",
                                  "flask", "jinja2", "itsdangerous", "uvicorn", "httpx",
                                  "prometheus_client", "opentelemetry"}:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
import nowramp_auth
from nowramp_auth import KeyManager, Authenticator, MemoryKeyStore
from nowramp_auth.testing import auth_kit
kit = auth_kit()
key = kit.key("quotes:read")
assert kit.authenticator.authenticate(key.secret).key_id == key.key.id
import nowramp_auth.cli
from nowramp_auth.metrics import OpenTelemetryMetrics, PrometheusMetrics
for exporter, extra in ((PrometheusMetrics, "metrics"), (OpenTelemetryMetrics, "opentelemetry")):
    try:
        exporter()
    except ImportError as exc:  # the extra to install, named
        assert f"nowramp_auth[{extra}]" in str(exc), exc
    else:
        raise AssertionError(f"{exporter.__name__} built without its library")
print("core ok")
"""


def test_core_needs_no_framework():
    result = subprocess.run(
        [sys.executable, "-c", BLOCKER], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "core ok" in result.stdout
