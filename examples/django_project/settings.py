"""Django + nowramp_auth settings.

Run: uvicorn examples.django_project.asgi:application --no-proxy-headers
"""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "examples.django_project.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
DATABASES: dict[str, object] = {}
MIDDLEWARE = ["nowramp_auth.django.ApiKeyMiddleware"]
NOWRAMP_AUTH = {
    "AUTHENTICATOR": "examples.django_project.urls.authenticator",
    "PUBLIC_PATHS": ["/health"],
}
REST_FRAMEWORK = {"UNAUTHENTICATED_USER": None}
