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


def model_identity(model: str) -> str:
    """A digest of a local pipeline folder's files (configs and weights); a hub id names itself."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    sha = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "README.md"):
        sha.update(path.relative_to(folder).as_posix().encode() + b"\0")
        update_with_file(sha, path)
    return sha.hexdigest()
