"""`genie stack up | down | status`: the team's servers (PostgreSQL, MLflow, Prefect), started from this machine."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from flows.cli_options import errors
from flows.stack import Stack

stack = typer.Typer(help="The team's servers without Docker: PostgreSQL from the system's binaries, an MLflow tracking "
                    "server on it with proxied artifacts, a Prefect server on it. `eval \"$(genie stack up)\"` "
                    "points this shell at them.", no_args_is_help=True)
Folder = Annotated[Path, typer.Option("--folder", help="where the servers keep their data, logs and pid files")]


@stack.command()
def up(folder: Folder = Path(".genie/stack"),
       host: Annotated[str, typer.Option(help="address to listen on; 0.0.0.0 serves the team's network")] = "127.0.0.1",
       postgres_port: Annotated[int, typer.Option(help="PostgreSQL's port")] = 5433,
       mlflow_port: Annotated[int, typer.Option(help="the MLflow tracking server's port")] = 5000,
       prefect_port: Annotated[int, typer.Option(help="the Prefect server's port")] = 4200) -> None:
    """Start PostgreSQL (initialised on first use), then the MLflow and Prefect servers on it; wait until they
    answer. Prints the environment to export, as lines a shell can eval; what is already running stays."""
    with errors():
        environment = Stack(folder, host, postgres_port, mlflow_port, prefect_port).up()
    print(f"servers up; data, logs and pids in {folder}", file=sys.stderr)
    for name, value in environment.items():
        print(f"export {name}={value}")


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
