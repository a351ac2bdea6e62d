"""The documentation: every public name has an API reference entry, and the README is the
front door (short, and every link it gives leads somewhere). ``mkdocs build --strict`` in
``.ci/run`` checks the site itself (broken links, pages missing from the navigation)."""

from __future__ import annotations

import importlib
import re

import pytest

from tests.servers import ROOT

# The modules whose public names (``__all__``) are the API users import.
PUBLIC_MODULES = [
    "nowramp_auth",
    "nowramp_auth.starlette",
    "nowramp_auth.fastapi",
    "nowramp_auth.wsgi",
    "nowramp_auth.django",
    "nowramp_auth.django.rest_framework",
    "nowramp_auth.litestar",
    "nowramp_auth.quart",
    "nowramp_auth.dashboard",
    "nowramp_auth.metrics",
    "nowramp_auth.leaks",
    "nowramp_auth.testing",
]
# Public for typing, not for use: documented through the objects that use them.
NOT_REFERENCED = {"nowramp_auth.fastapi.api_key_header"}


def reference_entries() -> set[str]:
    pages = (ROOT / "docs" / "reference").glob("*.md")
    return {m for page in pages for m in re.findall(r"^::: (\S+)$", page.read_text(), re.M)}


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_every_public_name_has_a_reference_entry(module: str):
    names = {f"{module}.{name}" for name in importlib.import_module(module).__all__}
    missing = names - reference_entries() - NOT_REFERENCED
    assert not missing, f"add these to a page under docs/reference/: {sorted(missing)}"


def test_every_reference_entry_names_something_that_exists():
    for entry in reference_entries():
        module, _, name = entry.rpartition(".")
        assert hasattr(importlib.import_module(module), name), entry


def test_the_readme_is_the_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        assert (ROOT / link).exists(), link
    for framework in ("fastapi", "flask", "django", "litestar", "quart"):
        assert framework in readme.lower(), framework
