"""File locks that name their holder: one writer per work folder, short critical sections per manifest."""
from __future__ import annotations

import fcntl
import json
import os
import re
import socket
import sys
import time
from contextlib import contextmanager
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
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('what', 'a writer')}, since {since})"


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
