"""Before a night does any work: the servers the environment names answer, the DVC remote exists. One line naming
what and where otherwise, with nothing run or registered."""
from __future__ import annotations

import os
import urllib.parse
import urllib.request
from pathlib import Path


class Unreachable(RuntimeError):
    """A server or remote the configuration names cannot be reached (the message names it and where)."""


def _shown(url: str) -> str:
    """A URL as it may be printed: without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def unanswered(url: str, timeout: float = 5) -> str | None:
    """Why an HTTP health URL does not answer with success, or None when it does."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except (OSError, ValueError) as err:  # urllib's HTTPError (a status >= 400) is an OSError too
        return str(getattr(err, "reason", err))


def check_servers(dvc_remote: str | None = None, timeout: float = 5) -> None:
    """Before any work starts: each server the environment names answers, and a folder DVC remote exists; else one
    line naming what and where (Unreachable), with nothing run or registered."""
    for variable, what, path in (("MLFLOW_TRACKING_URI", "the MLflow tracking server", "/health"),
                                 ("PREFECT_API_URL", "the Prefect server", "/health")):
        url = os.environ.get(variable, "")
        reason = unanswered(url.rstrip("/") + path, timeout) if url.startswith(("http://", "https://")) else None
        if reason is not None:
            raise Unreachable(f"{what} at {_shown(url)} ({variable}) does not answer: {reason}")
    database = os.environ.get("GENIE_DATABASE_URL")
    if database:
        import psycopg2

        try:
            psycopg2.connect(database, connect_timeout=int(timeout)).close()
        except psycopg2.Error as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise Unreachable(f"the database at {_shown(database)} (GENIE_DATABASE_URL) does not answer: "
                             f"{reason}") from None
    if dvc_remote and "://" not in dvc_remote and not Path(dvc_remote).is_dir():
        raise Unreachable(f"dvc.remote.url: folder {dvc_remote} not found (create it, or mount the team's share)")
