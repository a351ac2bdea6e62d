"""``nowramp-auth scan`` and the key pattern: real keys are found at the right line (and never
printed), look-alikes with a bad checksum are not, and the documented regular expression
matches every valid key while the checksum refuses every one-character change."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nowramp_auth._keys import BASE62, generate_key, make_hint, parse_key
from nowramp_auth.leaks import KEY_PATTERN, find_keys, scan_paths
from tests.servers import ROOT


def run_scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nowramp_auth", "scan", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def look_alike(key: str) -> str:
    # The same key with one body character changed: the checksum no longer holds.
    index = 20
    replacement = "A" if key[index] != "A" else "B"
    return key[:index] + replacement + key[index + 1 :]


def test_the_scanner_finds_keys_at_their_lines_and_never_prints_them(tmp_path: Path):
    live, test = generate_key("live")[0], generate_key("test")[0]
    (tmp_path / "settings.py").write_text(f'DEBUG = True\n\nAPI_KEY = "{live}"\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "notes.md").write_text(f"fake: {look_alike(test)}\nreal:\n  {test}\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text(f"{live}\n")  # skipped
    (tmp_path / "image.bin").write_bytes(b"\x00\x01" + live.encode())  # binary: skipped
    (tmp_path / "big.txt").write_bytes(b"x" * (5 * 1024 * 1024 + 1) + live.encode())  # skipped
    found = run_scan(str(tmp_path))
    assert found.returncode == 1, found.stderr
    assert found.stdout.splitlines() == [
        f"{tmp_path / 'settings.py'}:3: {make_hint(live)} (live key)",
        f"{tmp_path / 'sub' / 'notes.md'}:3: {make_hint(test)} (test key)",
    ]
    assert live not in found.stdout and test not in found.stdout
    as_json = json.loads(run_scan("--json", str(tmp_path)).stdout)
    assert [(Path(f["path"]).name, f["line"], f["key_type"]) for f in as_json] == [
        ("settings.py", 3, "live"),
        ("notes.md", 3, "test"),
    ]


def test_a_clean_tree_exits_0(tmp_path: Path):
    (tmp_path / "a.py").write_text(f"x = '{look_alike(generate_key('live')[0])}'\n")
    clean = run_scan(str(tmp_path))
    assert (clean.returncode, clean.stdout) == (0, "")


def test_the_pre_commit_hook_is_declared():
    text = (ROOT / ".pre-commit-hooks.yaml").read_text()
    assert "id: nowramp-auth-scan" in text and "entry: nowramp-auth scan" in text


@settings(max_examples=200, deadline=None)
@given(key_type=st.sampled_from(["live", "test"]), index=st.integers(10, 63), data=st.data())
def test_the_pattern_matches_every_key_and_the_checksum_every_change(key_type, index, data):
    key = generate_key(key_type)[0]
    assert re.fullmatch(KEY_PATTERN, key)
    assert [f.hint for f in find_keys(f"x={key};".encode())] == [make_hint(key)]
    other = data.draw(st.sampled_from([c for c in BASE62 if c != key[index]]))
    changed = key[:index] + other + key[index + 1 :]
    assert re.fullmatch(KEY_PATTERN, changed)  # still looks like a key ...
    assert parse_key(changed) is None  # ... but CRC32 catches every one-character change
    assert list(find_keys(changed.encode())) == []


def test_scan_paths_reads_a_single_file(tmp_path: Path):
    key = generate_key("test")[0]
    target = tmp_path / "one.env"
    target.write_text(f"NOWRAMP_KEY={key}\n")
    assert [(f.line, f.hint) for f in scan_paths([str(target)])] == [(1, make_hint(key))]
