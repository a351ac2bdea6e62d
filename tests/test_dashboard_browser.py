"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Playwright.

Signs in, creates a key, copies it from the show-once dialog, calls a protected API route of
the same app with it, rotates it, revokes it, and finds all of it in the audit log page.
Screenshots of each page are saved in the test's temporary directory (and, with
NOWRAMP_SCREENSHOTS=DIR, copied there).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from tests.servers import serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "browser-test-password-123"

pytestmark = pytest.mark.slow


@pytest.fixture
def browser_page(tmp_path: Path):
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        yield context, context.new_page()
        browser.close()


def shot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    target = os.environ.get("NOWRAMP_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / path.name)


def test_dashboard_in_a_browser(browser_page, tmp_path: Path):
    _context, page = browser_page
    args = [
        "uvicorn",
        "tests.dashboard_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--log-level",
        "warning",
    ]
    with serve(args, {"DASHBOARD_PASSWORD": PASSWORD}) as base:
        page.goto(base + "/dashboard/")
        assert page.url.endswith("/dashboard/login")
        shot(page, tmp_path, "01-sign-in")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/dashboard/keys")

        page.get_by_label("Name").fill("browser test key")
        page.get_by_label("Project ID").fill("proj_browser")
        page.get_by_label("quotes:read").check()
        page.get_by_label("orders:read").check()
        page.get_by_role("button", name="Create key").click()
        dialog = page.locator("dialog")
        assert "shown only once" in dialog.inner_text()
        shot(page, tmp_path, "02-new-key-dialog")
        page.get_by_role("button", name="Copy").click()
        page.get_by_text("Copied.").wait_for()
        secret = page.evaluate("navigator.clipboard.readText()")
        assert secret.startswith("ramp_test_") and len(secret) == 64

        api = httpx.get(base + "/v1/quotes", headers={"X-API-Key": secret})
        assert api.status_code == 200, api.text

        page.get_by_role("link", name="I have stored the key").click()
        page.wait_for_url("**/dashboard/keys")
        row = page.locator("tr", has_text="browser test key")
        assert "active" in row.inner_text()
        shot(page, tmp_path, "03-api-keys")

        # The operator gives the key's project a budget; the partner's usage shows against it.
        page.get_by_role("link", name="Projects").click()
        page.wait_for_url("**/dashboard/projects")
        section = page.locator("section", has_text="proj_browser")
        section.get_by_label("Budgets", exact=False).fill("plan=100/1d")
        section.get_by_role("button", name="Set budgets").click()
        page.wait_for_url("**/dashboard/projects?project=proj_browser")
        for _ in range(3):
            assert httpx.get(base + "/v1/quotes", headers={"X-API-Key": secret}).status_code == 200
        page.reload()
        assert "100 per 1d" in page.locator("tr.budget").inner_text()
        assert page.locator("tr.budget .used").inner_text() == "3"
        shot(page, tmp_path, "03b-projects")
        page.get_by_role("link", name="API Keys").click()
        page.wait_for_url("**/dashboard/keys")
        row.get_by_role("link", name="Rotate").click()
        shot(page, tmp_path, "04-rotate-confirm")
        page.get_by_role("button", name="Rotate key").click()
        assert "stays valid until" in page.locator("dialog").inner_text()
        new_secret = page.get_by_label("Test key", exact=False).input_value()
        assert new_secret != secret and new_secret.startswith("ramp_test_")
        shot(page, tmp_path, "05-rotated-key-dialog")
        assert httpx.get(base + "/v1/quotes", headers={"X-API-Key": new_secret}).status_code == 200
        assert httpx.get(base + "/v1/quotes", headers={"X-API-Key": secret}).status_code == 200

        page.get_by_role("link", name="I have stored the key").click()
        new_row = page.locator("tr", has_text="browser test key").filter(has_text="active")
        new_row.get_by_role("link", name="Revoke").click()
        page.get_by_role("button", name="Revoke key").click()
        page.wait_for_url("**/dashboard/keys")
        refused = httpx.get(base + "/v1/quotes", headers={"X-API-Key": new_secret})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "INVALID_API_KEY"

        page.get_by_role("link", name="Audit Logs").click()
        page.wait_for_url("**/dashboard/audit")
        table = page.locator("table").inner_text()
        for event in ("key.created", "key.rotated", "key.revoked", "auth.failed"):
            assert event in table, event
        shot(page, tmp_path, "06-audit-logs")

        page.set_viewport_size({"width": 390, "height": 844})  # a phone
        page.get_by_role("link", name="API Keys").click()
        page.wait_for_url("**/dashboard/keys")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400, f"page is {width}px wide on a 390px screen"
        shot(page, tmp_path, "07-api-keys-phone")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/dashboard/login")
    for name in ("01-sign-in", "03-api-keys", "06-audit-logs"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000


@pytest.mark.redis
def test_a_partner_on_two_instances(browser_page, tmp_path: Path, redis_url: str, namespace: str):
    """A partner signs in on one instance and keeps working on a second one sharing Redis;
    signing out on the second ends the session on the first."""
    from datetime import timedelta

    from nowramp_auth import KeyManager, RateLimit, RedisKeyStore
    from nowramp_auth._accounts import Accounts

    _context, page = browser_page
    store = RedisKeyStore.from_url(redis_url, namespace=namespace)
    manager = KeyManager(store)
    partner_password = "partner-password-456"
    Accounts(store).add("partner", partner_password, frozenset({"proj_partner"}))
    mine = manager.create(
        scopes=["quotes:read"],
        name="partner backend",
        project_id="proj_partner",
        rate_limit=RateLimit(4, timedelta(hours=1)),
    )
    theirs = manager.create(scopes=["quotes:read"], name="someone else", project_id="proj_other")
    env = {
        "DASHBOARD_PASSWORD": PASSWORD,
        "NOWRAMP_TEST_REDIS_URL": redis_url,
        "NOWRAMP_TEST_NAMESPACE": namespace,
    }
    args = ["uvicorn", "tests.dashboard_app:app", "--host", "127.0.0.1", "--port", "{port}"]
    args += ["--log-level", "warning"]
    try:
        with serve(args, env) as first, serve(args, env) as second:
            # Traffic for the usage chart, on the first instance: 4 accepted, 2 over the limit.
            answers = [
                httpx.get(first + "/v1/quotes", headers={"X-API-Key": mine.secret}).status_code
                for _ in range(6)
            ]
            assert answers == [200] * 4 + [429] * 2
            page.goto(first + "/dashboard/login")
            page.get_by_label("Username").fill("partner")
            page.get_by_label("Password").fill(partner_password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url("**/dashboard/keys")
            text = page.locator("main").inner_text()
            assert "partner backend" in text and "someone else" not in text
            assert theirs.key.id not in page.content()

            page.goto(second + "/dashboard/keys")  # the same browser, the other instance
            assert page.url.endswith("/dashboard/keys"), page.url
            page.get_by_role("link", name="partner backend").click()
            page.wait_for_url(f"**/dashboard/keys/{mine.key.id}")
            for _ in range(50):  # usage is written behind (every second): wait for it
                if page.locator("#accepted-total").inner_text() == "4":
                    break
                page.wait_for_timeout(200)
                page.reload()
            assert page.locator("#accepted-total").inner_text() == "4"
            assert "RATE_LIMITED 2" in page.locator("figcaption").inner_text()
            shot(page, tmp_path, "08-key-usage")
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url("**/dashboard/login")

            page.goto(first + "/dashboard/keys")  # signed out everywhere
            assert page.url.endswith("/dashboard/login"), page.url
    finally:
        store.close()
