"""With no PREFECT_API_URL, Prefect starts a temporary server as a child of each process that runs a flow; a genie
killed -9 (the OOM killer) would leave it running for good. genie starts that same server itself, from its main
thread, as a child the kernel kills together with its parent."""
from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys

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
    popen = subprocess.Popen
    subprocess.Popen = functools.partial(popen, preexec_fn=_die_with_parent)  # how Prefect starts it, plus the tie
    try:
        server.start()
    finally:
        subprocess.Popen = popen
