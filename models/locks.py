"""Locks that name their holder: one writer per work folder (a file lock), one per dataset across machines (a
PostgreSQL advisory lock, where GENIE_DATABASE_URL names the team's database), short critical sections per manifest."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

WRITER = ".lock"  # held for a whole run
MANIFEST_LOCK = ".manifest.lock"  # held while a manifest is read and replaced


def partial_path(target: Path) -> Path:
    """Where `target` is written before it is renamed into place: hidden, and unique to this process and host."""
    return target.with_name(f".{target.name}.{os.getpid()}@{socket.gethostname()}.partial")


def writer_alive(partial: Path) -> bool:
    """Whether the process that is writing `partial` (a `partial_path`) may still be running: not ours to judge
    on another host; on this one, its pid still exists."""
    found = re.fullmatch(r"\..+\.(\d+)@(.+)\.partial", partial.name)
    if found is None or found.group(2) != socket.gethostname():
        return found is not None
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


class Busy(RuntimeError):
    """The folder is held by another writer (the message names it)."""


def holder(path: Path) -> str:
    try:
        return _holder_text(path.read_text())
    except OSError:
        return "another process"


@contextmanager
def locked(folder: Path, what: str = "", wait: bool = True, name: str = WRITER,
           say=lambda text: print(text, file=sys.stderr)):
    """Hold `folder`'s lock for the block. Busy: wait (saying once who holds it) or, with wait=False, raise Busy.
    The lock is the kernel's (flock), so a killed holder releases it; the writer lock's file names the last
    holder, a manifest lock's stays empty (it lives among versioned files, whose digest must not move)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise Busy(f"{folder} is in use by {holder(path)}; try again later or drop --no-wait") from None
            say(f"waiting for {folder}: in use by {holder(path)}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        if name == WRITER:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                     "what": what}))
            handle.flush()
        yield
    finally:
        handle.close()  # closing releases the flock


_held: dict[str, object] = {}  # key -> the open session that holds it, while server_locked's block runs


def dataset_key(dataset: str) -> str:
    return f"dataset {dataset}"


def still_held(key: str) -> bool:
    """Whether this process still holds `key` on the team's database: a restart of PostgreSQL ends the session, and
    with it the lock, without a word to the holder. True where no server lock is held (a file lock cannot be lost)."""
    import psycopg2

    connection = _held.get(key)
    if connection is None:
        return True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # the same session, or an error: psycopg2 never reconnects by itself
        return True
    except psycopg2.Error:
        return False


HOLDERS = """CREATE TABLE IF NOT EXISTS genie_holders (key TEXT PRIMARY KEY, holder TEXT NOT NULL)"""


@contextmanager
def server_locked(url: str, key: str, what: str = "", wait: bool = True,
                  say=lambda text: print(text, file=sys.stderr)):
    """Hold `key` across every machine that uses the database at `url`, for the block: a session-level advisory
    lock, so a holder killed -9 (its connection closed by the kernel) or a restarted database frees it at once.
    Busy: wait (saying once who holds it) or, with wait=False, raise Busy naming the holder."""
    import psycopg2

    number = int.from_bytes(hashlib.sha256(f"genie:{key}".encode()).digest()[:8], "big", signed=True)
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "what": what})
    connection = psycopg2.connect(url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            try:
                cursor.execute(HOLDERS)
            except psycopg2.Error:  # created by another process at the same moment
                pass
            cursor.execute("SELECT pg_try_advisory_lock(%s)", (number,))
            if not cursor.fetchone()[0]:
                cursor.execute("SELECT holder FROM genie_holders WHERE key = %s", (key,))
                found = cursor.fetchone()
                holder_of = _holder_text(found[0] if found else "")
                if not wait:
                    raise Busy(f"{key} is in use by {holder_of}; try again later or drop --no-wait")
                say(f"waiting for {key}: in use by {holder_of}")
                cursor.execute("SELECT pg_advisory_lock(%s)", (number,))
            cursor.execute("INSERT INTO genie_holders VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET holder = %s",
                           (key, me, me))
        _held[key] = connection
        yield
    finally:
        _held.pop(key, None)
        connection.close()  # closing the session releases the lock


def _holder_text(text: str) -> str:
    try:
        info = json.loads(text or "{}")
    except ValueError:
        return "another process"
    if not info:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('what', 'a writer')}, since {since})"


@contextmanager
def exclusive(folder: Path, dataset: str, what: str = "", wait: bool = True):
    """One writer per dataset: this machine's work folder always, and every machine's when GENIE_DATABASE_URL names
    the team's database (`genie stack up` prints it)."""
    with ExitStack() as stack:
        stack.enter_context(locked(folder, what, wait))
        if os.environ.get("GENIE_DATABASE_URL"):
            stack.enter_context(server_locked(os.environ["GENIE_DATABASE_URL"], dataset_key(dataset), what, wait))
        yield
