"""`genie stack backup DIR` and `genie stack restore DIR --folder NEW`: the team's servers made again from a backup.
PostgreSQL's own tools dump each database (pg_dump's custom format, a consistent snapshot while nights write; the
password by PGPASSFILE, never on a command line), MLflow's artifact store is copied file by file, and the stack's
settings are kept beside them, all under one manifest (tasks/backup.py). The secrets are not in it: the operator
keeps `secrets/`, and a restore is handed it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from flows.servers.stack import OWNERS, PG_BIN, USER, Stack, StackError, private_files
from flows.servers.stack_secrets import LOCKER
from tasks.backup import begin, checked, copy_back, empty, seal

DATABASES = tuple(OWNERS)  # every database of the stack: MLflow's, its users', Prefect's, the nights' locks
ARTIFACTS = "mlartifacts"


@contextmanager
def passfile(stack: Stack):
    """libpq's password file for the stack's superuser, readable by this user only, removed after."""
    if not stack.secure:
        yield {}
        return
    handle, name = tempfile.mkstemp(dir=stack.secrets.folder, prefix=".pgpass-")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(f"*:{stack.postgres_port}:*:{USER}:{stack.secrets.password('postgres.' + USER)}\n")
        yield {"PGPASSFILE": name}
    finally:
        Path(name).unlink(missing_ok=True)


def pg(stack: Stack, tool: str, *args: str, env: dict[str, str]) -> None:
    """pg_dump or pg_restore of the system's PostgreSQL, as the stack's superuser over TCP."""
    command = [str(PG_BIN / tool), "--host", stack.local_address, "--port", str(stack.postgres_port),
               "--username", USER, "--no-password", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=os.environ | env)
    if done.returncode != 0:
        raise StackError(f"{tool} {args[-1]}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")


def backup(stack: Stack, out: Path) -> dict:
    """Every database dumped, the artifact store copied, the stack's settings kept: into `out` (new or empty)."""
    if not stack.status()["postgres"]["running"]:
        raise StackError(f"the stack in {stack.folder} is not running: `genie stack up` it first")
    partial = begin(out)
    with passfile(stack) as env:
        for database in tqdm(DATABASES, desc="pg_dump"):
            pg(stack, "pg_dump", "--format=custom", f"--file={partial / f'{database}.dump'}", database, env=env)
    shutil.copy(stack.folder / "stack.json", partial / "stack.json")
    return seal(partial, out, {ARTIFACTS: stack.folder / ARTIFACTS}, {"kind": "genie stack"})


def restore(source: Path, folder: Path, secrets: Path | None = None, host: str | None = None,
            ports: tuple[int | None, int | None, int | None] = (None, None, None)) -> Stack:
    """A new stack in `folder` from the backup in `source` (checked whole first): PostgreSQL initialised with the
    stack's secrets (`secrets`: the operator's copy of the old stack's `secrets/`), each database restored, the
    artifacts copied back, the servers started; members' files point at the new servers. Host and ports: the
    backed-up stack's unless given."""
    manifest = checked(source)
    saved = json.loads((source / "stack.json").read_text())
    keys = ("postgres_port", "mlflow_port", "prefect_port")
    stack = Stack(folder, host or saved["host"], *(given or int(saved[k]) for given, k in zip(ports, keys)),
                  saved.get("secure", "True") == "True")
    if not empty(stack.folder / "postgres") or not empty(stack.folder / ARTIFACTS):
        raise ValueError(f"{stack.folder}: a stack is already there; restore makes a new one and overwrites nothing")
    if stack.secure and not stack.secrets.exists():
        if secrets is None or not (secrets / "stack.ini").is_file():
            raise ValueError(f"{secrets or stack.secrets.folder}: no stack.ini; restore needs the old stack's "
                             "secrets folder (--secrets), which the backup leaves to the operator")
        shutil.copytree(secrets, stack.secrets.folder)
        stack.secrets.folder.chmod(0o700)
    stack.begin()  # the roles, with the secrets' passwords, and empty databases
    with private_files():
        with passfile(stack) as env:
            for database in tqdm(DATABASES, desc="pg_restore"):
                pg(stack, "pg_restore", "--clean", "--if-exists", "--exit-on-error", "--dbname", database,
                   str(source / f"{database}.dump"), env=env)
        copy_back(source, manifest, lambda relative: stack.folder / relative
                  if relative.startswith(f"{ARTIFACTS}/") else None)
    stack.up()
    for member in stack.secrets.members():  # their servers' addresses, where the ports or host changed
        environment = stack.secrets.member_environment(member)
        urls = stack.urls() | {"GENIE_DATABASE_URL": stack.database_url("genie", role=LOCKER)}
        stack.secrets.write_member(member, environment | {k: v for k, v in urls.items() if k in environment})
    return stack
