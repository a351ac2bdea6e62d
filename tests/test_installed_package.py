"""What a user installing the package gets: the package data, the console script, the one
version. CI runs this module (with the rest of the smoke subset) against the built wheel
installed into a fresh virtualenv, where ``NOWRAMP_SMOKE_FROM_WHEEL=1`` also checks that the
tests import the installed package, not a checkout."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import nowramp_auth

pytestmark = pytest.mark.smoke
PACKAGE = Path(nowramp_auth.__file__).parent


@pytest.mark.parametrize(
    ("folder", "pattern", "at_least"),
    [
        pytest.param("dashboard/templates", "*.html", 5, id="dashboard-templates"),
        pytest.param("stores/pg_migrations", "*.sql", 1, id="sql-migrations"),
        pytest.param(".", "py.typed", 1, id="py.typed"),
    ],
)
def test_package_data_is_installed(folder: str, pattern: str, at_least: int):
    assert len(list((PACKAGE / folder).glob(pattern))) >= at_least


def test_one_version_everywhere():
    assert importlib.metadata.version("nowramp_auth") == nowramp_auth.__version__
    result = subprocess.run(
        [sys.executable, "-m", "nowramp_auth", "--version"], capture_output=True, text=True
    )
    assert nowramp_auth.__version__ in result.stdout + result.stderr


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "nowramp-auth"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "keys" in result.stdout


@pytest.mark.skipif(not os.environ.get("NOWRAMP_SMOKE_FROM_WHEEL"), reason="not a wheel run")
def test_the_installed_wheel_is_what_runs():
    site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert PACKAGE.resolve().is_relative_to(site_packages), PACKAGE
    direct_url = importlib.metadata.distribution("nowramp_auth").read_text("direct_url.json")
    assert direct_url is None or '"editable": true' not in direct_url
