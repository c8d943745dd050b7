"""`genie backup DIR` and `genie restore DIR --folder NEW` for a project whose MLflow store is its own (`sqlite:`):
the store (copied with SQLite's online backup, consistent while a night writes), its artifacts (`mlruns/`) and the
DVC cache, with a manifest of each file's size and sha256. A backup is written beside DIR and renamed when whole;
a restore checks every file against the manifest before it writes anything, never overwrites, and moves the
store's artifact locations (MLflow records absolute paths) to the new folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

from tqdm import tqdm

from tasks.stores import store_folder

MANIFEST = "manifest.json"
DATABASE = "mlflow.db"
FOLDERS = {"mlruns": Path("mlruns"), "dvc-cache": Path(".dvc") / "cache"}  # in a backup -> in a project
# where MLflow's schema records an artifact location: moved with the artifacts on restore
LOCATIONS = (("experiments", "artifact_location"), ("runs", "artifact_uri"), ("logged_models", "artifact_location"),
             ("model_versions", "source"), ("model_versions", "storage_location"))
CHUNK = 1 << 20


def database() -> Path:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith("sqlite:///"):
        raise ValueError(f"MLFLOW_TRACKING_URI {uri or '(unset)'}: genie backup copies a project's own store "
                         "(sqlite:///...); a team's servers are backed up where they run")
    return Path(uri.removeprefix("sqlite:///")).resolve()


def empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def stream(path: Path, bar: tqdm, write=None) -> tuple[int, str]:
    """A file read once: its size and sha256 (and its bytes handed to `write`, where given)."""
    digest, count = hashlib.sha256(), 0
    with open(path, "rb") as read:
        while chunk := read.read(CHUNK):
            digest.update(chunk)
            count += len(chunk)
            bar.update(len(chunk))
            if write is not None:
                write(chunk)
    return count, digest.hexdigest()


def copy(source: Path, target: Path, bar: tqdm) -> tuple[int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as out:
        found = stream(source, bar, out.write)
    shutil.copystat(source, target)
    return found


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()) if root.is_dir() else []


def backup(out: Path) -> dict:
    """The store, its artifacts and the DVC cache of the project in the current folder, into `out` (new or empty)."""
    if not empty(out):
        raise ValueError(f"{out}: not empty; a backup goes into a new folder and overwrites nothing")
    db, partial = database(), out.with_name(f"{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with sqlite3.connect(db) as source, sqlite3.connect(partial / DATABASE) as target:
        source.backup(target)  # first: artifacts a row of it names were written before it
    sources = {name: files_under(folder) for name, folder in FOLDERS.items()}
    manifest = {"made": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mlruns": str(store_folder() / FOLDERS["mlruns"]),
                "files": {}}
    total = sum(p.stat().st_size for paths in sources.values() for p in paths) + (partial / DATABASE).stat().st_size
    with tqdm(total=total, unit="B", unit_scale=True, desc="backup") as bar:
        manifest["files"][DATABASE] = list(stream(partial / DATABASE, bar))
        for name, paths in sources.items():
            for path in paths:
                relative = (Path(name) / path.relative_to(FOLDERS[name])).as_posix()
                manifest["files"][relative] = list(copy(path, partial / relative, bar))
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
    total = sum(size for size, _ in files.values())
    with tqdm(total=total, unit="B", unit_scale=True, desc="checking the backup") as bar:
        for relative, (size, sha256) in files.items():
            path = source / relative
            if not path.is_file():
                raise ValueError(f"{path}: missing from the backup; nothing was restored")
            if stream(path, bar) != (size, sha256):
                raise ValueError(f"{path}: damaged (its size or sha256 differs from the manifest); nothing was "
                                 "restored")
    return manifest


def restore(source: Path, folder: Path) -> dict:
    """The backup in `source`, checked whole, into the project folder `folder` (its store, artifacts and DVC cache
    must not exist yet); artifact locations moved from the backed-up folder to this one."""
    manifest = checked(source)
    taken = [folder / p for p in (Path(DATABASE), *FOLDERS.values()) if not empty(folder / p)]
    if taken:
        raise ValueError(f"{taken[0]}: already there; restore writes into a folder without a store and "
                         "overwrites nothing")
    folder.mkdir(parents=True, exist_ok=True)
    with tqdm(total=sum(size for size, _ in manifest["files"].values()), unit="B", unit_scale=True,
              desc="restore") as bar:
        for relative in manifest["files"]:
            name, _, rest = relative.partition("/")
            target = folder / FOLDERS[name] / rest if rest else folder / DATABASE
            copy(source / relative, target, bar)
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
