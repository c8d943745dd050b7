"""Before a night does any work: the servers the environment names answer, the DVC remote exists. One line naming
what and where otherwise, with nothing run or registered."""
from __future__ import annotations

import base64
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path


class Unreachable(RuntimeError):
    """A server or remote the configuration names cannot be reached (the message names it and where)."""


class Refused(RuntimeError):
    """A server refused this process's credentials, or its role lacks a permission (the message names both)."""


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


def _status(url: str, authorization: str | None, timeout: float) -> int:
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _basic(login: str) -> str:
    return "Basic " + base64.b64encode(login.encode()).decode()


def mlflow_refusal(status: int, action: str = "") -> str:
    """The one line for MLflow's 401 or 403, naming the server and the user."""
    url, user = os.environ.get("MLFLOW_TRACKING_URI", ""), os.environ.get("MLFLOW_TRACKING_USERNAME")
    if status == 401:
        return (f"the MLflow server at {_shown(url)} refused user {user!r} (401): check MLFLOW_TRACKING_USERNAME/"
                "PASSWORD" if user else f"the MLflow server at {_shown(url)} asks for a login (401): set "
                "MLFLOW_TRACKING_USERNAME/PASSWORD (your file from `genie stack user add`)")
    role = os.environ.get("GENIE_ROLE")
    return (f"the MLflow server at {_shown(url)} refused user {user!r} (403): "
            f"{f'the {role} role' if role else 'their role'} lacks the permission{f' to {action}' if action else ''}")


def refusal(err: BaseException, action: str = "") -> str | None:
    """The one line for an MLflow client error that is a refusal (401, 403), else None."""
    text = str(err)
    for status in (401, 403):
        if f"error code {status} " in text or f"status code {status}" in text:
            return mlflow_refusal(status, action)
    return None


def check_credentials(timeout: float = 5) -> None:
    """Each server the environment names accepts this process's credentials (one authenticated read), else
    Refused in one line."""
    url = os.environ.get("MLFLOW_TRACKING_URI", "")
    if url.startswith(("http://", "https://")):
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        login = _basic(f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}") if user else None
        status = _status(url.rstrip("/") + "/api/2.0/mlflow/experiments/search?max_results=1", login, timeout)
        if status in (401, 403):
            raise Refused(mlflow_refusal(status, "read experiments"))
    url = os.environ.get("PREFECT_API_URL", "")
    if url.startswith(("http://", "https://")):
        credential = os.environ.get("PREFECT_API_AUTH_STRING")
        if _status(url.rstrip("/") + "/admin/version", _basic(credential) if credential else None, timeout) == 401:
            raise Refused(f"the Prefect server at {_shown(url)} refused "
                          + ("the credential (401): check PREFECT_API_AUTH_STRING" if credential else
                             "a request without a credential (401): set PREFECT_API_AUTH_STRING (a worker's or "
                             "admin's file from `genie stack user add`)"))


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
            if "password" in reason:  # "password authentication failed for user ...", "no password supplied"
                raise Refused(f"the database at {_shown(database)} (GENIE_DATABASE_URL) refused its login: "
                              f"{reason.split('FATAL:')[-1].strip()}") from None
            raise Unreachable(f"the database at {_shown(database)} (GENIE_DATABASE_URL) does not answer: "
                             f"{reason}") from None
    check_credentials(timeout)
    if dvc_remote and "://" not in dvc_remote and not Path(dvc_remote).is_dir():
        raise Unreachable(f"dvc.remote.url: folder {dvc_remote} not found (create it, or mount the team's share)")
