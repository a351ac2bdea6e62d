"""ASGI entry (uvicorn); ``get_wsgi_application`` from ``django.core.wsgi`` serves gunicorn."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_project.settings")
application = get_asgi_application()
