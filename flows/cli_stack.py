"""`genie stack up | down | status`: the team's servers (PostgreSQL, MLflow, Prefect), started from this machine."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli_options import errors, show
from flows.servers import members
from flows.servers.stack import Stack

stack = typer.Typer(help="The team's servers without Docker: PostgreSQL from the system's binaries, an MLflow tracking "
                    "server on it with proxied artifacts, a Prefect server on it. `eval \"$(genie stack up)\"` "
                    "points this shell at them.", no_args_is_help=True)
Folder = Annotated[Path, typer.Option("--folder", help="where the servers keep their data, logs and pid files")]


@stack.command()
def up(folder: Folder = Path(".genie/stack"),
       host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 serves the team's network")] = "127.0.0.1",
       postgres_port: Annotated[int, typer.Option(help="PostgreSQL's port")] = 5433,
       mlflow_port: Annotated[int, typer.Option(help="the MLflow tracking server's port")] = 5000,
       prefect_port: Annotated[int, typer.Option(help="the Prefect server's port")] = 4200,
       insecure: Annotated[bool, typer.Option(
           "--insecure", help="no passwords on any server: anyone who reaches them may do anything (a laptop)")] = False
       ) -> None:
    """Start PostgreSQL (initialised on first use), then the MLflow and Prefect servers on it; wait until they
    answer. Every server asks for a password (generated once into FOLDER/secrets, readable by you only) unless
    --insecure. Prints a line a shell can eval to use them as the stack's admin; what is already running stays."""
    with errors():
        found = Stack(folder, host, postgres_port, mlflow_port, prefect_port, not insecure)
        environment = found.up()
    print(f"servers up; data, logs and pids in {folder}", file=sys.stderr)
    if insecure:
        print("WARNING: --insecure: no server asks for a password; anyone who reaches them can change or delete "
              "the registry and run code on the workers", file=sys.stderr)
        for name, value in environment.items():
            print(f"export {name}={value}")
    else:
        print(f". {shlex.quote(str(found.secrets.member_file('admin')))}")
        print("members: genie stack user add NAME --role reader|worker|admin", file=sys.stderr)


@stack.command()
def status(folder: Folder = Path(".genie/stack")) -> None:
    """Whether each server runs and answers, and its URL."""
    with errors():
        print(json.dumps(Stack.load(folder).status(), indent=2))


@stack.command()
def down(folder: Folder = Path(".genie/stack"),
         remove: Annotated[bool, typer.Option("--remove", help="also delete the servers' data")] = False) -> None:
    """Stop the servers; their data stays for the next `up` unless --remove."""
    with errors():
        found = Stack.load(folder)
        found.remove() if remove else found.down()
    print(f"servers down{' and removed' if remove else ''} ({folder})", file=sys.stderr)


@stack.command()
def backup(out: Annotated[Path, typer.Argument(help="a new or empty folder for the backup")],
           folder: Folder = Path(".genie/stack")) -> None:
    """Back up the running stack: each PostgreSQL database with pg_dump (consistent while nights run), MLflow's
    artifact store and the stack's settings, under a manifest of sha256s. The secrets are not in it: keep a copy of
    FOLDER/secrets yourself (restore needs it)."""
    from flows.servers.backup import backup as dump

    with errors():
        show(dump(Stack.load(folder), out))


@stack.command()
def restore(source: Annotated[Path, typer.Argument(help="a folder `genie stack backup` wrote")],
            folder: Folder = Path(".genie/stack"),
            secrets: Annotated[Optional[Path], typer.Option(help="the old stack's secrets folder (FOLDER/secrets), "
                                                            "unless FOLDER/secrets is already there")] = None,
            host: Annotated[Optional[str], typer.Option(help="listen address (default: the backed-up stack's)")]
            = None,
            postgres_port: Annotated[Optional[int], typer.Option(help="default: the backed-up stack's")] = None,
            mlflow_port: Annotated[Optional[int], typer.Option(help="default: the backed-up stack's")] = None,
            prefect_port: Annotated[Optional[int], typer.Option(help="default: the backed-up stack's")] = None
            ) -> None:
    """Make the stack again in FOLDER from a backup: every file checked against the manifest first (a missing or
    damaged one stops it, nothing written), PostgreSQL initialised with the secrets and each database restored, the
    artifacts copied back, the servers started, members' files pointed at them. Overwrites nothing."""
    from flows.servers.backup import restore as make_again

    with errors():
        found = make_again(source, folder, secrets, host, (postgres_port, mlflow_port, prefect_port))
    print(f"restored; servers up in {folder}", file=sys.stderr)
    print(f". {shlex.quote(str(found.secrets.member_file('admin')))}" if found.secure else "")


user = typer.Typer(help="The team's members: each gets a generated password, an environment file of their own "
                   "(FOLDER/secrets/members/NAME.env) and a role: reader (sees runs, metrics, lineage, the registry), "
                   "worker (runs nights), admin (promote, rollback, users, deployments). docs/team.md says what "
                   "enforces each.", no_args_is_help=True)
stack.add_typer(user, name="user")


@user.command("add")
def user_add(name: str, role: Annotated[str, typer.Option(help="reader, worker or admin")],
             folder: Folder = Path(".genie/stack")) -> None:
    """Create the member on the MLflow server with the role's grants; prints their environment file's path (hand
    it to them: it holds their password)."""
    with errors():
        print(members.add(Stack.load(folder), name, role))


@user.command("remove")
def user_remove(name: str, folder: Folder = Path(".genie/stack")) -> None:
    """Delete the member from the MLflow server and their environment file."""
    with errors():
        role = members.remove(Stack.load(folder), name)
    print(f"removed {name} ({role})" + ("; they also knew the shared Prefect and database passwords (docs/team.md: "
                                         "changing them)" if role != "reader" else ""), file=sys.stderr)


@user.command("list")
def user_list(folder: Folder = Path(".genie/stack")) -> None:
    """Each member and their role (no passwords)."""
    with errors():
        print(json.dumps(Stack.load(folder).secrets.members(), indent=2))
