"""Where MLflow keeps things, seen from this machine: local artifact paths, their bytes, the store's own folder
(nothing outside it is this project's to delete), and every registered version, page by page."""
from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

PAGE = 10000  # versions per search request


def local_path(uri: str) -> Path | None:
    """A file: URI or plain path as a folder on this machine; None for a server's or a cloud's."""
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else uri)
    return None


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def missing(err: MlflowException) -> bool:
    """MLflow's "not there" (a run, logged model or version deleted for good), as against a failed read."""
    return err.error_code == "RESOURCE_DOES_NOT_EXIST"


def sqlite_store() -> Path | None:
    """The SQLite file of the tracking store, where it is one."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return Path(uri.removeprefix("sqlite:///")).resolve() if uri.startswith("sqlite:///") else None


def store_folder() -> Path | None:
    """The folder of the tracking store when it is on this machine (an SQLite file's folder, a file store's root);
    None for a server, whose artifacts it serves and deletes itself."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if (db := sqlite_store()) is not None:
        return db.parent
    path = local_path(uri) if uri.startswith("file:") else None
    return path.resolve() if path else None


def outside_store(locations: list[str]) -> list[str]:
    """The artifact locations on this machine that lie outside the store's folder: MLflow records absolute paths, so
    a copied project folder still names the original's artifacts, which its gc must not touch."""
    root = store_folder()
    if root is None:
        return []
    return [loc for loc in locations if (path := local_path(loc)) and not path.resolve().is_relative_to(root)]


def every_version(filter_string: str = "") -> list:
    """The registered versions the filter selects (every model's with an empty one), page by page."""
    client, found, token = MlflowClient(), [], None
    while True:
        page = client.search_model_versions(filter_string, max_results=PAGE, page_token=token)
        found += page
        token = page.token
        if not token:
            return found
