"""Specification of reguidance.io.hashing: the one sha256 helper for files, bytes and recorded digests."""

from __future__ import annotations

from pathlib import Path

import pytest

from reguidance.io.hashing import ChecksumError, check_sha256, sha256_bytes, sha256_file

# FIPS 180-2, appendix B: the sha256 of "abc" and of the empty message
ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
# FIPS 180-2, appendix B.3: one million repetitions of "a" (spans several read blocks)
MILLION_A = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"


def test_file_digest_is_the_published_sha256_of_its_bytes(tmp_path: Path) -> None:
    for content, digest in ((b"abc", ABC), (b"", EMPTY), (b"a" * 1_000_000, MILLION_A)):
        path = tmp_path / "f.bin"
        path.write_bytes(content)
        assert sha256_file(path) == digest
        assert sha256_file(str(path)) == digest


def test_bytes_digest_is_the_published_sha256() -> None:
    assert sha256_bytes(b"abc") == ABC
    assert sha256_bytes(memoryview(b"abc")) == ABC
    assert sha256_bytes(b"") == EMPTY


def test_matching_digest_passes_in_either_case() -> None:
    check_sha256("x", ABC, ABC.upper(), "never shown")


def test_mismatch_names_the_file_both_digests_and_the_remedy() -> None:
    with pytest.raises(ChecksumError, match=rf"weights\.pt has sha256 {EMPTY} but {ABC} was expected; re-fetch it"):
        check_sha256("weights.pt", EMPTY, ABC, "re-fetch it")
    assert issubclass(ChecksumError, ValueError)
