"""What every `genie` command shares: its options, the one error mapping, settings loading and output."""
from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.servers.preflight import refusal
from models.config import ConfigError, Settings
from models.params import load_settings

Params = Annotated[Path, typer.Option("--params", "-p", help="the configuration file")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="stop at once if another run holds the dataset's work folder")]
Retrain = Annotated[bool, typer.Option("--retrain", help="train the embedded generator again where the retrain policy "
                                       "says so (tens of minutes; it becomes the current one); without it, stop")]
Set = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", metavar="KEY=VALUE", help="override a key of params.yaml, e.g. classifier.epochs=3")]


@contextmanager
def errors(action: str = ""):
    """The one error mapping: a bad configuration exits 2, bad input or a failed step exits 1, each as one line;
    a server's refusal names the server, the user and the `action` their role may not do."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except Exception as err:
        line = refusal(err, action)  # a server's 401 or 403, wrapped or not: who was refused, where, and why
        if line is None and not isinstance(err, (ValueError, OSError, RuntimeError)):
            raise
        typer.echo(f"error: {line or err}", err=True)
        raise typer.Exit(1) from None


LOG = Path(".genie") / "logs" / "errors.log"
FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")  # and the traceback
DEBUG = {"on": False}  # `genie --debug`: tracebacks on the console too


class TracebacksToFile(logging.Filter):
    """On the console a failed step is the one `error:` line of `errors()`; the record that carries its traceback
    (Prefect's "Encountered exception", "Task run failed") goes whole to LOG instead, or with --debug to both."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or DEBUG["on"]:
            return True
        LOG.parent.mkdir(parents=True, exist_ok=True)
        with open(LOG, "a") as log:
            log.write(FORMAT.format(record) + "\n")
        return False


def console_without_tracebacks() -> None:
    """Once Prefect has set up logging (at its import): its console handlers, on the root logger, get the filter."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(isinstance(f, TracebacksToFile)
                                                                  for f in handler.filters):
            handler.addFilter(TracebacksToFile())


def begin_server(context: typer.Context, flows: set[str]) -> None:
    """A command that runs flows begins Prefect's temporary server before it imports what they need (unless it only
    prints its help): the server's start-up then runs beside those imports."""
    if context.invoked_subcommand in flows and not {"--help", "-h"} & set(sys.argv[1:]):
        from flows.servers.local_server import begin_temporary_server

        begin_temporary_server()


def settings(params: Path, overrides: list[str] | None) -> Settings:
    with errors():
        return load_settings(params, overrides or [])


@contextmanager
def in_flow():
    """errors(), around a flow run from this process: Prefect's temporary server started (unless one is configured)
    and its console without tracebacks."""
    from flows.servers.local_server import start_temporary_server

    with errors():
        start_temporary_server()
        console_without_tracebacks()
        yield


def run_flow(flow, config: Settings, **kwargs):
    with in_flow():
        return flow(config, **kwargs)


def show(result) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


def show_table(result: dict) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        typer.echo(pd.DataFrame(result.get("summary") or result["table"]).to_string(index=False))
    for line in result.get("verdicts", ()):
        typer.echo(line)
    typer.echo(f"results: {result['out_dir']} (MLflow run {result['run_id']}); render them with `genie report`")
