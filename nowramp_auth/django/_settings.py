"""The settings of the Django integration: ``settings.NOWRAMP_AUTH`` and the authenticator it
names. The lowest room of :mod:`nowramp_auth.django`: views, the middleware and the DRF
classes read it; it reads none of them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .._authenticator import Authenticator

__all__ = ["configured_authenticator", "django_settings"]


def configured_authenticator() -> Authenticator:
    """The ``Authenticator`` that ``settings.NOWRAMP_AUTH["AUTHENTICATOR"]`` names (a dotted
    path to an ``Authenticator``, or to a callable returning one)."""
    config = django_settings()
    dotted = config.get("AUTHENTICATOR")
    if not isinstance(dotted, str):
        raise ImproperlyConfigured(
            'NOWRAMP_AUTH["AUTHENTICATOR"] must be the dotted path of an Authenticator'
        )
    try:
        target = import_string(dotted)
    except ImportError as exc:
        raise ImproperlyConfigured(f'NOWRAMP_AUTH["AUTHENTICATOR"]: {exc}') from exc
    if not isinstance(target, Authenticator) and callable(target):
        target = target()
    if not isinstance(target, Authenticator):
        raise ImproperlyConfigured(
            f'NOWRAMP_AUTH["AUTHENTICATOR"] names {type(target).__name__}, not an Authenticator'
        )
    return target


def django_settings() -> dict[str, Any]:
    """``settings.NOWRAMP_AUTH`` (``ImproperlyConfigured`` unless it is a dict)."""
    config = getattr(settings, "NOWRAMP_AUTH", None)
    if not isinstance(config, dict):
        raise ImproperlyConfigured("settings.NOWRAMP_AUTH must be a dict (see nowramp_auth.django)")
    return config
