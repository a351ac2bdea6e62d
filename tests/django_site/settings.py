"""Settings of the Django project the tests run (in process, under gunicorn and uvicorn)."""

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.django_site.urls"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"]
DATABASES: dict[str, object] = {}
USE_TZ = True
MIDDLEWARE = ["nowramp_auth.django.ApiKeyMiddleware"]
NOWRAMP_AUTH = {
    "AUTHENTICATOR": "tests.django_site.auth.authenticator",
    "PUBLIC_PATHS": ["/health", "/open/*"],  # /open/*: DRF classes alone, no middleware
    "WIDGET_SESSIONS_PATH": "/widget/sessions",
}
REST_FRAMEWORK = {
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
}
