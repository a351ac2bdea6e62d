"""The refusal of a well-formed unknown key and of a known key id with a wrong secret take
indistinguishable time: both compare a digest in constant time and answer the same error."""

from __future__ import annotations

import statistics
import time
import zlib

import pytest

from nowramp_auth import AuthError
from nowramp_auth._keys import _encode_base62, generate_key
from nowramp_auth.testing import auth_kit

pytestmark = pytest.mark.slow


def forge(secret: str) -> str:
    """The same key id with another secret and a valid checksum."""
    head = secret[:30] + ("A" if secret[30] != "A" else "B") + secret[31:-6]
    return head + _encode_base62(zlib.crc32(head.encode()), 6)


def ks_statistic(a: list[int], b: list[int]) -> float:
    """Two-sample Kolmogorov-Smirnov D: the largest gap between the two CDFs."""
    a, b = sorted(a), sorted(b)
    i = j = 0
    d = 0.0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            i += 1
        else:
            j += 1
        d = max(d, abs(i / len(a) - j / len(b)))
    return d


@pytest.mark.parametrize("entry", ["authenticate", "adapter screen"])
def test_unknown_key_and_wrong_secret_are_indistinguishable(entry: str):
    kit = auth_kit()
    issued = kit.key("quotes:read")
    wrong_secret = forge(issued.secret)
    unknowns = [generate_key("test")[0] for _ in range(64)]
    auth = kit.authenticator
    samples: dict[str, list[int]] = {"unknown": [], "wrong_secret": []}
    codes: set[str] = set()

    def sample(kind: str, value: str) -> None:
        if entry == "adapter screen":  # what the adapters do first with a key they do not know
            raw = value.encode()
            start = time.perf_counter_ns()
            auth.accept_verified(raw, None)
            answer = auth.parse_presented(raw, None, "GET", "/")
            elapsed = time.perf_counter_ns() - start
            assert isinstance(answer, AuthError)
            codes.add(answer.code.value)
            samples[kind].append(elapsed)
            return
        start = time.perf_counter_ns()
        try:
            auth.authenticate(value)
        except AuthError as error:
            elapsed = time.perf_counter_ns() - start
            codes.add(error.code.value)
            samples[kind].append(elapsed)

    for index in range(20_000):  # interleaved, so machine noise hits both alike
        sample("unknown", unknowns[index % len(unknowns)])
        sample("wrong_secret", wrong_secret)
    assert codes == {"INVALID_API_KEY"}
    unknown_median = statistics.median(samples["unknown"])
    wrong_median = statistics.median(samples["wrong_secret"])
    d = ks_statistic(samples["unknown"], samples["wrong_secret"])
    print(
        f"\ntiming: unknown key median {unknown_median / 1000:.2f} µs, wrong secret median "
        f"{wrong_median / 1000:.2f} µs, ratio {wrong_median / unknown_median:.3f}, "
        f"KS D = {d:.3f} over {len(samples['unknown'])} samples each"
    )
    # Same code path, same work: a gross difference (e.g. skipping the digest for unknown
    # ids) would show as a ratio far from 1.
    assert 0.8 < wrong_median / unknown_median < 1.25
