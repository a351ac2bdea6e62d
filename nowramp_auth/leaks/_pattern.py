"""What a leaked key looks like in text: the regular expression a secret scanner uses, and
finding checksum-valid keys in a file's bytes (pure).

A key is ``ramp_live_`` or ``ramp_test_`` and 54 base62 characters, the last 6 of which are
a CRC32 of everything before them (:mod:`nowramp_auth._keys`). The expression finds
candidates; the checksum then drops look-alikes (CRC32 catches every change of one
character, and all but about one in four billion random strings).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import NamedTuple

from .._keys import KeyType, make_hint, parse_key

__all__ = ["KEY_PATTERN", "KEY_REGEX", "Found", "find_keys"]

KEY_PATTERN = r"\bramp_(?:live|test)_[0-9A-Za-z]{54}\b"
"""The regular expression of a key (also GitHub's secret-scanning pattern for it); a match
is a key when its checksum holds."""
KEY_REGEX = re.compile(KEY_PATTERN.encode("ascii"))


class Found(NamedTuple):
    """A checksum-valid key found in text (never the key itself)."""

    line: int
    """1-based line number."""
    hint: str
    """The key's display hint (prefix and last 4 characters)."""
    key_type: KeyType


def find_keys(data: bytes) -> Iterator[Found]:
    """Every checksum-valid key in ``data``, in order."""
    for match in KEY_REGEX.finditer(data):
        token = match.group().decode("ascii")
        parsed = parse_key(token)
        if parsed is not None:
            line = data.count(b"\n", 0, match.start()) + 1
            yield Found(line, make_hint(token), parsed.key_type)
