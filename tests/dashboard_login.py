"""Signing in to the dashboard as a browser does: the form first (its CSRF token and the
cookie that pairs with it), then the POST."""

from __future__ import annotations

import re
from typing import Any

import httpx
from starlette.testclient import TestClient

__all__ = ["login", "login_token"]


def login_token(client: TestClient | httpx.Client, path: str) -> str:
    """GET the sign-in form at ``path``: its CSRF token (the client keeps the cookie)."""
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def login(client: TestClient | httpx.Client, path: str, data: dict[str, Any]) -> httpx.Response:
    """POST the sign-in form at ``path`` with ``data`` and the form's CSRF token."""
    return client.post(path, data={**data, "csrf_token": login_token(client, path)})
