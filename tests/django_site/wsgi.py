"""WSGI entry of the test project (gunicorn)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_site.settings")
application = get_wsgi_application()
