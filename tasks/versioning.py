"""DVC: make sure the project is a DVC repository, track data, read its md5."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import yaml
from prefect import task

from models.config import DvcRemoteConfig


class VersioningError(RuntimeError):
    pass


def dvc(*args: str, cwd: Path | str = ".") -> str:
    """Run the DVC command line (one call at a time: DVC locks its repository)."""
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        raise VersioningError(f"dvc {' '.join(args)}: {message[-1] if message else 'failed'}")
    return result.stdout


def in_git(root: Path) -> bool:
    probe = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=root, capture_output=True, text=True)
    return probe.returncode == 0 and Path(probe.stdout.strip()).resolve() == root.resolve()


def ensure_repo(root: Path = Path(".")) -> None:
    if not (root / ".dvc").is_dir():
        dvc("init", "--quiet", *([] if in_git(root) else ["--no-scm"]), cwd=root)


def tracked_target(path: Path, root: Path = Path(".")) -> Path:
    """The folder DVC tracks for a dataset: the top folder under the project (data/ -> data.dvc)."""
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        raise VersioningError(
            f"dataset.path {path} is outside the project {root.resolve()}: DVC can only version data "
            "inside it (copy or move the dataset under data/)"
        ) from None
    return Path(relative.parts[0])


@contextmanager
def _state(root: Path):
    """DVC's own state database of the repository (each file's md5 by inode, mtime and size), shared with the
    `dvc` commands: a file hashed once, by either, is never read again while it is unchanged."""
    from dvc.repo import Repo
    from dvc_data.hashfile.state import StateNoop

    if not (root / ".dvc").is_dir():
        yield StateNoop()
        return
    repo = Repo(str(root))
    try:
        yield repo.state
    finally:
        repo.close()


def dvc_md5(folder: Path, root: Path = Path(".")) -> str:
    """DVC's md5 of a folder, computed the way `dvc add` does (the project's .dvcignore applied), reading only
    the files whose inode, mtime or size DVC has not seen; the repository's data is not touched."""
    from dvc.ignore import DvcIgnoreFilter
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    fs = LocalFileSystem()
    with _state(root) as state:
        _, _, tree = build(HashFileDB(MemoryFileSystem(), "/odb", state=state), str(folder.resolve()), fs, "md5",
                           dry_run=True, ignore=DvcIgnoreFilter(fs, str(root.resolve())))
    return tree.hash_info.value


def ignore_links(folder: Path, root: Path = Path(".")) -> list[str]:
    """Symbolic links under `folder` that lead nowhere or out of it, added to the project's .dvcignore: DVC cannot
    hash the first and would copy the second into the dataset; the dataset scan skips both with a reason.
    Returns the paths added."""
    inside = (root / folder).resolve()
    links = sorted(p.absolute().relative_to(root.resolve()).as_posix() for p in (root / folder).rglob("*")
                   if p.is_symlink() and (not p.exists() or not p.resolve().is_relative_to(inside)))
    path = root / ".dvcignore"
    known = set(path.read_text().splitlines()) if path.exists() else set()
    added = [link for link in links if f"/{link}" not in known]
    if added:
        with open(path, "a") as handle:
            handle.write("# symbolic links leading nowhere or out of the data, left out of versioning by genie-flow\n")
            handle.writelines(f"/{link}\n" for link in added)
    return added


def track(folder: Path, root: Path = Path(".")) -> tuple[str, Path]:
    """`dvc add` a folder; return its md5 and the .dvc pointer.

    Inside a `dvc repro` stage (DVC_STAGE set) DVC holds the repository lock and versions
    the stage's outputs itself, so the md5 is only computed.
    """
    pointer = folder.with_name(folder.name + ".dvc")
    if os.environ.get("DVC_STAGE"):
        return dvc_md5(root / folder, root), pointer
    ensure_repo(root)
    ignore_links(folder, root)
    recorded = _pointer_md5(root / pointer)
    if recorded and _cached(recorded, root) and recorded == dvc_md5(root / folder, root):
        return recorded, pointer  # nothing changed since it was added: no `dvc add` (a walk of the whole cache)
    dvc("add", folder.as_posix(), cwd=root)
    return _pointer_md5(root / pointer), pointer


def _cached(md5: str, root: Path) -> bool:
    """Whether the project's DVC cache (its default place) holds this folder's listing."""
    return (root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).is_file()


def _pointer_md5(pointer: Path) -> str | None:
    try:
        return yaml.safe_load(pointer.read_text())["outs"][0]["md5"]
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return None


def track_dataset(path: Path, root: Path = Path(".")) -> tuple[str, Path]:
    return track(tracked_target(path, root), root)


@task(name="dvc-commit")
def commit_stages(stages: list[str], root: Path = Path(".")) -> list[str]:
    """Record what the flow made as these dvc.yaml stages' outputs (dvc.lock and the DVC cache).

    Returns the stages that could not be committed (e.g. an output this configuration does not make).
    """
    if os.environ.get("DVC_STAGE") or not (root / "dvc.yaml").is_file():
        return []
    declared = yaml.safe_load((root / "dvc.yaml").read_text()).get("stages", {})
    stages = [stage for stage in stages if stage in declared]
    try:
        if stages:
            dvc("commit", "--force", *stages, cwd=root)  # one DVC process (its start-up is ~1.5 s) for them all
        return []
    except VersioningError:  # one of them cannot be: commit them one by one to learn which
        pass
    failed = []
    for stage in stages:
        try:
            dvc("commit", "--force", stage, cwd=root)
        except VersioningError:
            failed.append(stage)
    return failed


@task(name="version-generated")
def version_generated(folder: Path, root: Path = Path(".")) -> tuple[str, Path]:
    """The generated images' DVC md5. Where dvc.yaml declares them (the generate stage), DVC
    versions them through dvc.lock; elsewhere they get a .dvc pointer of their own."""
    if (root / "dvc.yaml").is_file() or os.environ.get("DVC_STAGE"):
        return dvc_md5(root / folder, root), root / "dvc.lock"
    return track(folder, root)


@task(name="dvc-push")
def push(remote: DvcRemoteConfig, targets: list[str], root: Path = Path(".")) -> str | None:
    """Push `targets` (.dvc files, dvc.yaml stages) to the team's remote, configured in the project's .dvc/config.local.
    DVC's objects are named by their md5, so pushes from several machines at once write the same bytes to the same
    names. Returns the remote's URL, or None when none is configured or DVC holds the repository (a `dvc repro`)."""
    if not remote.url or os.environ.get("DVC_STAGE"):
        return None
    dvc("remote", "add", "--local", "--force", remote.name, remote.url, cwd=root)  # .dvc/config.local: git stays clean
    dvc("push", "--remote", remote.name, *targets, cwd=root)
    return remote.url
