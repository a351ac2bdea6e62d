"""Litestar and Quart apps on the memory store, for the real-server tests: the reader key's
secret goes to ``NOWRAMP_TEST_KEY_FILE`` (a test-only hand-off)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nowramp_auth.testing import auth_kit
from tests.test_litestar_quart import litestar_app, quart_app

_kit = auth_kit()
_reader = _kit.key("quotes:read")
Path(os.environ["NOWRAMP_TEST_KEY_FILE"]).write_text(json.dumps({"reader": _reader.secret}))
litestar = litestar_app(_kit)
quart = quart_app(_kit)
