"""Backups that a restore can trust. A backup is a folder of files and a manifest of each one's size and sha256,
written beside its destination and renamed when whole; a restore checks every file against the manifest before it
writes anything, and overwrites nothing. `genie backup` / `genie restore` use it for a project whose MLflow store is
its own (`sqlite:`): the store (SQLite's online backup: consistent while a night writes), its artifacts (`mlruns/`)
and the DVC cache, with the store's artifact locations (MLflow records absolute paths) moved to the new folder.
`genie stack backup` / `restore` use it for the team's servers (flows/servers/backup.py)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from tasks.stores import sqlite_store, store_folder

MANIFEST = "manifest.json"
DATABASE = "mlflow.db"
FOLDERS = {"mlruns": Path("mlruns"), "dvc-cache": Path(".dvc") / "cache"}  # in a backup -> in a project
# where MLflow's schema records an artifact location: moved with the artifacts on restore
LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"),
             ("model_versions", "source"), ("model_versions", "storage_location"))
CHUNK = 1 << 20


def empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def bar(total: int, what: str) -> tqdm:
    return tqdm(total=total, unit="B", unit_scale=True, desc=what)


def stream(path: Path, progress: tqdm, write=None) -> tuple[int, str]:
    """A file read once: its size and sha256 (and its bytes handed to `write`, where given)."""
    digest, count = hashlib.sha256(), 0
    with open(path, "rb") as read:
        while chunk := read.read(CHUNK):
            digest.update(chunk)
            count += len(chunk)
            progress.update(len(chunk))
            if write is not None:
                write(chunk)
    return count, digest.hexdigest()


def copy(source: Path, target: Path, progress: tqdm) -> tuple[int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        found = stream(source, progress, out.write)
    shutil.copystat(source, target)
    return found


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()) if root.is_dir() else []


def begin(out: Path) -> Path:
    """The folder a backup is written into (renamed to `out` by `seal`); `out` must be new or empty."""
    if not empty(out):
        raise ValueError(f"{out}: not empty; a backup goes into a new folder and overwrites nothing")
    partial = out.with_name(f"{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def seal(partial: Path, out: Path, folders: dict[str, Path], extra: dict) -> dict:
    """The `folders` (name in the backup -> a folder here) copied into `partial` beside the files already there,
    every file listed with its size and sha256 in the manifest (with `extra`), then `partial` renamed to `out`."""
    written = files_under(partial)
    sources = {name: files_under(folder) for name, folder in folders.items()}
    total = sum(p.stat().st_size for paths in [written, *sources.values()] for p in paths)
    manifest = {"made": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra, "files": {}}
    with bar(total, "backup") as progress:
        for path in written:
            manifest["files"][path.relative_to(partial).as_posix()] = list(stream(path, progress))
        for name, paths in sources.items():
            for path in paths:
                relative = (Path(name) / path.relative_to(folders[name])).as_posix()
                manifest["files"][relative] = list(copy(path, partial / relative, progress))
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if out.exists():
        out.rmdir()
    partial.rename(out)
    return {"backup": str(out), "files": len(manifest["files"]), "bytes": total}


def checked(source: Path) -> dict:
    """The backup's manifest, once every file it lists is there with its size and sha256; else a one-line error."""
    if not (source / MANIFEST).is_file():
        raise ValueError(f"{source}: not a genie backup (no {MANIFEST})")
    try:
        manifest = json.loads((source / MANIFEST).read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{source / MANIFEST}: damaged (not the manifest genie backup writes)") from None
    with bar(sum(size for size, _ in files.values()), "checking the backup") as progress:
        for relative, (size, sha256) in files.items():
            path = source / relative
            if not path.is_file():
                raise ValueError(f"{path}: missing from the backup; nothing was restored")
            if stream(path, progress) != (size, sha256):
                raise ValueError(f"{path}: damaged (its size or sha256 differs from the manifest); nothing was "
                                 "restored")
    return manifest


def copy_back(source: Path, manifest: dict, place: Callable[[str], Path | None]) -> None:
    """Each file of a checked backup to where `place` puts it (None: left in the backup)."""
    targets = {relative: place(relative) for relative in manifest["files"]}
    with bar(sum(manifest["files"][r][0] for r, t in targets.items() if t), "restore") as progress:
        for relative, target in targets.items():
            if target is not None:
                copy(source / relative, target, progress)


# -- a project's own store --------------------------------------------------------------------------------------
def database() -> Path:
    db = sqlite_store()
    if db is None:
        raise ValueError(f"MLFLOW_TRACKING_URI {os.environ.get('MLFLOW_TRACKING_URI') or '(unset)'}: genie backup "
                         "copies a project's own store (sqlite:///...); a team's servers: genie stack backup")
    return db


def backup(out: Path) -> dict:
    """The store, its artifacts and the DVC cache of the project in the current folder, into `out` (new or empty)."""
    db, partial = database(), begin(out)
    with sqlite3.connect(db) as source, sqlite3.connect(partial / DATABASE) as target:
        source.backup(target)  # first: the artifacts a row of it names were written before it
    return seal(partial, out, FOLDERS, {"mlruns": str(store_folder() / FOLDERS["mlruns"])})


def restore(source: Path, folder: Path) -> dict:
    """The backup in `source`, checked whole, into the project folder `folder` (its store, artifacts and DVC cache
    must not exist yet); artifact locations moved from the backed-up folder to this one."""
    manifest = checked(source)
    taken = [folder / p for p in (Path(DATABASE), *FOLDERS.values()) if not empty(folder / p)]
    if taken:
        raise ValueError(f"{taken[0]}: already there; restore writes into a folder without a store and "
                         "overwrites nothing")

    def place(relative: str) -> Path:
        name, _, rest = relative.partition("/")
        return folder / FOLDERS[name] / rest if rest else folder / DATABASE

    copy_back(source, manifest, place)
    moved = move_locations(folder / DATABASE, manifest["mlruns"] + "/", f"{(folder / FOLDERS['mlruns']).resolve()}/")
    return {"restored": str(folder), "files": len(manifest["files"]), "locations moved": moved}


def move_locations(db: Path, old: str, new: str) -> int:
    """Rewrite the artifact locations under `old` to lie under `new`; returns how many rows moved."""
    moved = 0
    with sqlite3.connect(db) as connection:
        for table, column in LOCATIONS:
            present = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            if column in present:
                moved += connection.execute(
                    f"UPDATE {table} SET {column} = replace({column}, ?, ?) WHERE instr({column}, ?) > 0",
                    (old, new, old)).rowcount
    return moved
