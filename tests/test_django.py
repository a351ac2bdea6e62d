"""A Django project protected by the WSGI middleware (minimal in-test configuration)."""

from __future__ import annotations

import json

import django
import pytest
from django.conf import settings
from django.http import JsonResponse
from django.urls import path
from werkzeug.test import Client

from nowramp_auth import current_principal
from nowramp_auth.testing import auth_kit
from nowramp_auth.wsgi import PRINCIPAL_ENVIRON_KEY, ApiKeyMiddleware


def whoami(request):
    principal = request.META[PRINCIPAL_ENVIRON_KEY]
    assert current_principal() == principal
    return JsonResponse({"key_id": principal.key_id, "scopes": sorted(principal.scopes)})


def health(request):
    return JsonResponse({"status": "ok"})


urlpatterns = [path("whoami", whoami), path("health", health)]


@pytest.fixture(scope="module")
def django_wsgi():
    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="test-only-not-secret",
            ROOT_URLCONF=__name__,
            ALLOWED_HOSTS=["*"],
            MIDDLEWARE=[],
            INSTALLED_APPS=[],
        )
        django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def test_django_view_sees_the_principal(django_wsgi):
    kit = auth_kit()
    issued = kit.key("quotes:read")
    app = ApiKeyMiddleware(django_wsgi, authenticator=kit.authenticator, public_paths=["/health"])
    client = Client(app)
    ok = client.get("/whoami", headers={"X-API-Key": issued.secret})
    assert ok.status_code == 200
    assert json.loads(ok.get_data()) == {"key_id": issued.key.id, "scopes": ["quotes:read"]}
    refused = client.get("/whoami")
    assert refused.status_code == 401
    assert json.loads(refused.get_data())["error"]["code"] == "MISSING_API_KEY"
    assert client.get("/health").status_code == 200
    assert client.get("/whoami", headers={"X-API-Key": "nope"}).status_code == 401
