"""DVC storage is shared: a checkout's cache holds every dataset's objects and a remote holds the team's. An object
may go only when no registered version of any model in the tracking store names it, no `.dvc` file or dvc.lock of
the checkout's git refs or work tree names it, and it is older than the grace period (a night elsewhere may have
pushed it a moment ago)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from tasks.stores import every_version

POINTERS = (".dvc", "dvc.lock")  # the file names that name DVC objects


def named_md5s(deleted: set[str], name: str) -> set[str]:
    """The md5s every registered version records (except `name`'s versions in `deleted`, which gc is deleting), and
    those the checkout's pointers name, in the work tree and in every git branch and tag."""
    keep = {value for version in every_version() if not (version.name == name and str(version.version) in deleted)
            for key, value in version.tags.items() if key.endswith("dvc_md5")}
    for text in in_work_tree() + in_git_refs():
        keep |= set(_md5s(yaml.safe_load(text)))
    return {md5 for md5 in keep if md5}


def in_work_tree() -> list[str]:
    """The text of every pointer under the project (not under dot folders: .genie's copies, .dvc, a venv)."""
    texts = []
    for folder, dirs, files in os.walk("."):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        texts += [(Path(folder) / f).read_text() for f in files if f.endswith(POINTERS)]
    return texts


def in_git_refs() -> list[str]:
    """The text of every `.dvc` file and dvc.lock in the checkout's branches and tags (none outside a git repo)."""
    if subprocess.run(["git", "rev-parse", "--git-dir"], capture_output=True).returncode != 0:
        return []
    texts = []
    for ref in sorted(set(_git("for-each-ref", "--format=%(objectname)", "refs/heads", "refs/tags").split())):
        for path in _git("ls-tree", "-r", "--full-tree", "--name-only", ref).splitlines():
            if path.endswith(POINTERS):
                texts.append(_git("show", f"{ref}:{path}"))
    return texts


def _git(*args: str) -> str:
    """A git command's output; a failure raises (gc then deletes nothing)."""
    done = subprocess.run(["git", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise OSError(f"git {' '.join(args[:2])}: {(done.stderr.strip().splitlines() or ['failed'])[0]}")
    return done.stdout


def _md5s(tree) -> list[str]:
    if isinstance(tree, dict):
        return [str(v) for k, v in tree.items() if k == "md5"] + [m for v in tree.values() for m in _md5s(v)]
    return [m for v in tree for m in _md5s(v)] if isinstance(tree, list) else []


def _object(root: Path, md5: str) -> Path:
    return root / "files" / "md5" / md5[:2] / md5[2:]


def unreferenced(root: Path, keep: set[str], before: float) -> list[Path]:
    """DVC objects under `root` (a cache or a local remote: one layout) that no kept folder lists, last written
    before `before` (a time)."""
    if not (root / "files" / "md5").is_dir():
        return []
    needed = set()
    for md5 in keep:
        needed.add(md5)
        listing = _object(root, md5)
        if md5.endswith(".dir") and listing.is_file():
            needed |= {entry["md5"] for entry in json.loads(listing.read_text())}
    return [path for path in (root / "files" / "md5").glob("??/*")
            if path.parent.name + path.name not in needed and not path.name.endswith(".lock")
            and path.stat().st_mtime < before]
