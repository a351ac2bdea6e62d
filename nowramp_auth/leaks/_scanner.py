"""``nowramp-auth scan``: find checksum-valid keys in files before they are committed.

Walks the paths given (directories recursively), skipping ``.git`` (and other version-control
directories), files that look binary (a NUL byte in their first 8 KiB) and files over 5 MiB.
Reports the path, the line and the key's hint; never the key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from .._keys import KeyType
from ._pattern import find_keys

__all__ = ["MAX_FILE_BYTES", "Finding", "scan_paths"]

MAX_FILE_BYTES = 5 * 1024 * 1024
_SKIPPED_DIRS = frozenset({".git", ".hg", ".svn"})


class Finding(NamedTuple):
    """A key found in a file."""

    path: str
    line: int
    hint: str
    key_type: KeyType


def scan_paths(paths: Iterable[str]) -> Iterator[Finding]:
    """Every checksum-valid key in the files under ``paths``, file by file (sorted)."""
    for path in _files(paths):
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                continue
            data = path.read_bytes()
        except OSError:  # vanished, unreadable: nothing to report
            continue
        if b"\0" in data[:8192]:
            continue
        for found in find_keys(data):
            yield Finding(str(path), found.line, found.hint, found.key_type)


def _files(paths: Iterable[str]) -> Iterator[Path]:
    for given in paths:
        root = Path(given)
        if root.is_file():
            yield root
            continue
        for directory, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d not in _SKIPPED_DIRS)
            for name in sorted(files):
                candidate = Path(directory, name)
                if candidate.is_file() and not candidate.is_symlink():
                    yield candidate
