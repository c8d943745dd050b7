"""DVC: make sure the project is a DVC repository, track data, read its md5."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


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


def track(path: Path, root: Path = Path(".")) -> tuple[str, Path]:
    """`dvc add` the folder holding `path`; return its md5 and the .dvc file.

    Inside a `dvc repro` stage (DVC_STAGE set) DVC holds the repository lock and has
    already checked the data as a dependency, so the pointer is only read.
    """
    target = tracked_target(path, root)
    pointer = root / f"{target.as_posix()}.dvc"
    if not os.environ.get("DVC_STAGE"):
        ensure_repo(root)
        dvc("add", "--quiet", target.as_posix(), cwd=root)
    elif not pointer.is_file():
        raise VersioningError(f"{pointer} not found: run `genie prepare` once before `dvc repro`")
    return yaml.safe_load(pointer.read_text())["outs"][0]["md5"], pointer
