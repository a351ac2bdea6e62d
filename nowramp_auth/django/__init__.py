"""Django integration: ``ApiKeyMiddleware`` for ``settings.MIDDLEWARE`` and
``require_scopes`` for views; Django REST framework classes live in
:mod:`nowramp_auth.django.rest_framework`.

Example::

    # settings.py
    MIDDLEWARE = [..., "nowramp_auth.django.ApiKeyMiddleware", ...]
    NOWRAMP_AUTH = {"AUTHENTICATOR": "myproject.auth.authenticator",
                    "PUBLIC_PATHS": ["/health"], "WIDGET_SESSIONS_PATH": "/widget/sessions"}

    # views.py
    from nowramp_auth.django import require_scopes

    @require_scopes("quotes:read")
    def quotes(request):
        ...  # request.principal is the Principal

Needs the ``django`` extra (``pip install 'nowramp_auth[django]'``).
"""

from __future__ import annotations

from ._middleware import ApiKeyMiddleware
from ._settings import configured_authenticator
from ._views import require_scopes

__all__ = ["ApiKeyMiddleware", "configured_authenticator", "require_scopes"]
