"""Leaked keys: GitHub secret-scanning alerts and public reports revoke them in seconds, and
partners can scan their files before they commit.

Example::

    from nowramp_auth.leaks import secret_scanning_app
    app.mount("/security/github-secret-scanning", secret_scanning_app(manager, notify=email))

``KEY_PATTERN`` is the regular expression of a key (for GitHub or any scanner);
``scan_paths`` is what ``nowramp-auth scan`` runs. The app needs the ``leaks`` extra
(``cryptography``); the scanner needs nothing beyond the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._pattern import KEY_PATTERN, Found, find_keys
from ._scanner import Finding, scan_paths

if TYPE_CHECKING:
    from ._app import secret_scanning_app

__all__ = ["KEY_PATTERN", "Finding", "Found", "find_keys", "scan_paths", "secret_scanning_app"]


def __getattr__(name: str) -> Any:
    # The app imports Starlette and cryptography; the scanner (the CLI's) needs neither.
    if name == "secret_scanning_app":
        from ._app import secret_scanning_app

        return secret_scanning_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
