"""One night per dataset across machines: how long a dataset stays taken after its holder is killed -9, and what a
server restart does, for a PostgreSQL advisory lock and for a Prefect global concurrency limit (strict), both on
the servers `genie stack up` starts. Prints one JSON object (docs/team.md has the figures).

    python benchmarks/exclusion.py --folder /tmp/genie-exclusion --lease 60
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from flows.servers.stack import Stack

ADVISORY = """
import sys, time
from models.locks import server_locked
with server_locked(sys.argv[1], "dataset bench", "holder"):
    print("held", flush=True)
    time.sleep(3600)
"""
LIMIT = """
import sys, time
from prefect.concurrency.sync import concurrency
with concurrency("dataset-bench", occupy=1, strict=True, lease_duration=float(sys.argv[1])):
    print("held", flush=True)
    time.sleep(3600)
"""


def hold(code: str, arg: str, env: dict) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", code, arg], stdout=subprocess.PIPE, text=True, env=env)
    assert holder.stdout.readline() == "held\n", "the holder did not take the lock"
    return holder


def advisory_free(url: str) -> bool:
    from models.locks import Busy, server_locked

    try:
        with server_locked(url, "dataset bench", "probe", wait=False):
            return True
    except Busy:
        return False


def limit_free(env: dict) -> bool:
    probe = "from prefect.concurrency.sync import concurrency\nwith concurrency('dataset-bench', strict=True, " \
            "timeout_seconds=1): pass"
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


def seconds_until(free, limit: float) -> float | None:
    """Seconds until `free()` holds, or None past `limit`."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        if free():
            return round(time.monotonic() - started, 2)
        time.sleep(0.5)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/genie-exclusion"), help="the servers' folder")
    parser.add_argument("--lease", type=float, default=60, help="the concurrency limit's lease, in seconds")
    parser.add_argument("--wait", type=float, default=180, help="give up on a lock after this many seconds")
    args = parser.parse_args()
    stack = Stack(args.folder, postgres_port=15533, mlflow_port=15100, prefect_port=14300)
    env = os.environ | stack.up()
    url = env["GENIE_DATABASE_URL"]
    subprocess.run([str(Path(sys.executable).with_name("prefect")), "gcl", "create", "dataset-bench", "--limit", "1"],
                   env=env, capture_output=True)
    out = {"lease_seconds": args.lease}
    try:
        for name, code, arg, free in (("advisory lock", ADVISORY, url, lambda: advisory_free(url)),
                                      ("concurrency limit", LIMIT, str(args.lease), lambda: limit_free(env))):
            holder = hold(code, arg, env)
            taken = not free()
            holder.kill()
            holder.wait()
            out[name] = {"taken while held": taken, "free after kill -9 (s)": seconds_until(free, args.wait)}
            holder = hold(code, arg, env)
            stack.down()
            stack.up()  # every server restarted, PostgreSQL with them; the holder still runs
            out[name]["free after a restart of the servers, holder alive (s)"] = seconds_until(free, args.wait)
            holder.kill()
            holder.wait()
            out[name]["free after that holder's kill -9 (s)"] = seconds_until(free, args.wait)
    finally:
        stack.remove()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
