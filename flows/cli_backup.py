"""`genie backup DIR` and `genie restore DIR --folder NEW`: a project's own store (mlflow.db), its artifacts and
its DVC cache, copied whole and checked (tasks/backup.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli_options import errors, show


def backup(out: Annotated[Path, typer.Argument(help="a new or empty folder for the backup")]) -> None:
    """Copy this project's MLflow store (consistent while a night runs: SQLite's online backup), its artifacts
    (mlruns/) and the DVC cache into OUT, with a manifest of every file's sha256. Secrets are not in it."""
    from tasks.backup import backup as copy_out

    with errors():
        show(copy_out(out))


def restore(source: Annotated[Path, typer.Argument(help="a folder `genie backup` wrote")],
            folder: Annotated[Path, typer.Option("--folder", help="the project folder to restore into (a fresh "
                                                 "checkout of the project; it must have no store yet)")]) -> None:
    """Check every file of the backup against its manifest, then put the store, its artifacts and the DVC cache into
    FOLDER, with the store's artifact locations moved there. A missing or damaged file stops it before anything is
    written; nothing is overwritten."""
    from tasks.backup import restore as copy_in

    with errors():
        show(copy_in(source, folder))
