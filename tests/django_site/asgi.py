"""ASGI entry of the test project (uvicorn)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_site.settings")
application = get_asgi_application()
