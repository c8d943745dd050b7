"""Content digests: what every cache key and content key is built from."""
from __future__ import annotations

import hashlib
from pathlib import Path


def update_with_file(sha, path: Path | str) -> None:
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)


def file_digest(path: Path | str) -> str:
    sha = hashlib.sha256()
    update_with_file(sha, path)
    return sha.hexdigest()
