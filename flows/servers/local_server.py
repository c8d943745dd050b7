"""With no PREFECT_API_URL, Prefect starts a temporary server as a child of each process that runs a flow; a genie
killed -9 (the OOM killer) would leave it running for good. genie starts that same server itself, as a child the
kernel kills together with the thread that started it, a thread kept until the process ends.

That server migrates its database as it starts, and Prefect waits for it only
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS (20 s): a new Prefect home's first migration takes longer on a slow
or busy machine. So genie migrates first, with no time limit, whenever the database is not at Prefect's newest
revision.

Both are begun in that thread as a command starts (`begin_temporary_server`), before it imports torch, MLflow and
diffusers: the server's start-up (10-30 s on 2 cores) runs beside those imports instead of after them."""
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a child gets when the thread that started it ends
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None  # resolved before any
# fork: a forked child must not load libraries (another thread may hold the loader's lock)
_started: Future | None = None


def _die_with_parent() -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def begin_temporary_server() -> None:
    """Begin starting Prefect's temporary server in a thread of its own, unless a server is configured; once per
    process (Prefect keeps one server per process: every client of this process then talks to this one)."""
    global _started
    if _started is not None or os.environ.get("PREFECT_API_URL") or _prctl is None:
        return
    _started = Future()
    threading.Thread(target=_serve, args=(_started,), name="prefect-server", daemon=True).start()


def start_temporary_server() -> None:
    """The temporary server, started (or begun earlier) and ready; a failed start raises here."""
    begin_temporary_server()
    if _started is not None:
        _started.result()


def _serve(started: Future) -> None:
    try:
        with migrating():  # the server's own module (~8 s to import) is imported meanwhile
            from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        if not server.running:
            with _tied_to(threading.current_thread()):
                server.start()
    except BaseException as err:  # noqa: BLE001 - handed to the thread that waits
        started.set_exception(err)
        return
    started.set_result(None)
    threading.Event().wait()  # the server lives as long as this thread: until the process ends


class _tied_to:
    """While in use, processes this thread starts die with it (PR_SET_PDEATHSIG); other threads' are untouched."""

    def __init__(self, thread: threading.Thread):
        self.thread, self.popen = thread, subprocess.Popen

    def __enter__(self):
        thread, popen = self.thread, self.popen

        class Tied(popen):
            def __init__(self, *args, **kwargs):
                if threading.current_thread() is thread:
                    kwargs.setdefault("preexec_fn", _die_with_parent)
                super().__init__(*args, **kwargs)

        subprocess.Popen = Tied

    def __exit__(self, *exc):
        subprocess.Popen = self.popen


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
    """Migrate the temporary server's SQLite database to Prefect's newest revision when it is not there yet."""
    with migrating():
        pass


@contextmanager
def migrating():
    """While the block runs, the temporary server's SQLite database is migrated to Prefect's newest revision when it
    is not there yet (a new PREFECT_HOME, a Prefect upgrade), saying so in one line; at its end, it is. One process
    at a time: the others wait, then find it ready."""
    database = sqlite_database()
    newest = newest_revisions() if database is not None else set()
    if database is None or revisions(database) == newest:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.parent / ".genie-migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if revisions(database) == newest:  # another process migrated it meanwhile
            yield
            return
        print("preparing Prefect's database (first run only)", file=sys.stderr, flush=True)
        # a process of its own, not tied to this one: on the other core, and whole even if this command stops early
        migration = subprocess.Popen([sys.executable, "-c", MIGRATE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        yield
        out, err = migration.communicate()
        if migration.returncode != 0:
            lines = (err or out).strip().splitlines()
            raise RuntimeError(f"Prefect's database {database} could not be migrated: "
                               f"{lines[-1] if lines else migration.returncode}")


MIGRATE = ("import asyncio; from prefect.server.database import provide_database_interface; "
           "asyncio.run(provide_database_interface().create_db())")
