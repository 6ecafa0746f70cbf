"""sha256 digests of bytes and files, and their check against a recorded digest.

The one place where reguidance hashes anything: the dataset files and caches (:mod:`reguidance.io.datasets`), the
committed test subsets, the embedded and downloaded model weights (:mod:`reguidance.priors.zoo`), the metric
classifiers (:mod:`reguidance.evaluation.classifier`) and the LPIPS weights (:mod:`reguidance.evaluation.lpips`).
Digests are lowercase hex strings of 64 characters (``hashlib.sha256(...).hexdigest()``).
"""

from __future__ import annotations

import hashlib
import os

__all__ = ["ChecksumError", "check_sha256", "sha256_bytes", "sha256_file"]

_CHUNK = 1 << 20


class ChecksumError(ValueError):
    """A file's (or array's) sha256 differs from the recorded one (corrupt, truncated or a different release)."""


def sha256_bytes(data: bytes | bytearray | memoryview) -> str:
    """Hex sha256 of ``data`` (a ``memoryview`` of a C-contiguous array hashes its raw bytes)."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB blocks (the file is never held in memory whole)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def check_sha256(what: str, actual: str, expected: str, remedy: str) -> None:
    """Raise :class:`ChecksumError` naming ``what``, both digests and the ``remedy`` unless ``actual`` equals
    ``expected`` (compared in lowercase)."""
    if actual.lower() != expected.lower():
        raise ChecksumError(
            f"sha256 mismatch: {what} has sha256 {actual.lower()} but {expected.lower()} was expected; {remedy}"
        )
