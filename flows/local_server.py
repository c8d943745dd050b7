"""With no PREFECT_API_URL, Prefect starts a temporary server as a child of each process that runs a flow; a genie
killed -9 (the OOM killer) would leave it running for good. genie starts that same server itself, from its main
thread, as a child the kernel kills together with its parent.

That server migrates its database as it starts, and Prefect waits for it only
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (20 s): a new Prefect home's first migration takes longer on a slow
or busy machine. So genie migrates first, with no time limit, whenever the database is not at Prefect's newest
revision."""
from __future__ import annotations

import ctypes
import fcntl
import functools
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a child gets when the thread that started it ends


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_temporary_server() -> None:
    """Start Prefect's temporary server now, tied to this process (Linux), unless a server is configured. Prefect
    keeps one per process: every client of this process then talks to this one."""
    if os.environ.get("PREFECT_API_URL") or not sys.platform.startswith("linux"):
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    if server.running:
        return
    prepare_database()
    popen = subprocess.Popen
    subprocess.Popen = functools.partial(popen, preexec_fn=_die_with_parent)  # how Prefect starts it, plus the tie
    try:
        server.start()
    finally:
        subprocess.Popen = popen


def sqlite_database() -> Path | None:
    """The file of the temporary server's database (Prefect's default: prefect.db in PREFECT_HOME); None when its
    database is not SQLite."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    url = url.get_secret_value() if url is not None else ""
    prefix = "sqlite+aiosqlite:///"
    return Path(url.removeprefix(prefix)) if url.startswith(prefix) and ":memory:" not in url else None


def newest_revisions() -> set[str]:
    """The heads of Prefect's SQLite migrations, read from its migration scripts (no database import)."""
    from importlib.util import find_spec

    from alembic.script import ScriptDirectory

    migrations = Path(find_spec("prefect").submodule_search_locations[0]) / "server" / "database" / "_migrations"
    return set(ScriptDirectory(str(migrations), version_locations=[str(migrations / "versions" / "sqlite")])
               .get_heads())


def revisions(database: Path) -> set[str]:
    """The migrations a SQLite database of Prefect's is at; empty when it has none (or no such file)."""
    if not database.is_file():
        return set()
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            return {row[0] for row in connection.execute("SELECT version_num FROM alembic_version")}
    except sqlite3.Error:
        return set()


def prepare_database() -> None:
    """Migrate the temporary server's SQLite database to Prefect's newest revision when it is not there yet (a new
    PREFECT_HOME, a Prefect upgrade), saying so in one line. One process at a time: the others wait, then find it
    ready."""
    database = sqlite_database()
    newest = newest_revisions() if database is not None else set()
    if database is None or revisions(database) == newest:
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.parent / ".genie-migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if revisions(database) == newest:  # another process migrated it meanwhile
            return
        print("preparing Prefect's database (first run only)", file=sys.stderr, flush=True)
        import asyncio

        from prefect.server.database import provide_database_interface

        asyncio.run(provide_database_interface().create_db())
