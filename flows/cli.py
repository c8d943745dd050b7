"""The `genie` command line."""
from __future__ import annotations

import os

# Quiet, offline-friendly defaults, set before Prefect, MLflow or DVC are imported.
for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH": os.path.abspath(".genie/prefect-results"),
}.items():
    os.environ.setdefault(_key, _value)

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402

from models.config import ConfigError, Settings, load_settings  # noqa: E402

app = typer.Typer(
    help="genie-flow: generated hard negatives (GeNIe) for image classifiers, as tracked workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="the configuration file")]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="override a key of params.yaml, e.g. classifier.epochs=3"),
]


def settings_from(params: Path, overrides: list[str] | None) -> Settings:
    try:
        return load_settings(params, overrides or [])
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None


def fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1) from None


@app.command()
def prepare(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Export the embedded digits (if configured and absent), version the dataset with DVC,
    validate every file and write the stratified split manifest."""
    from flows.pipeline import genie_prepare

    settings = settings_from(params, set_)
    try:
        typer.echo(json.dumps(genie_prepare(settings), indent=2))
    except (ValueError, OSError, RuntimeError) as err:
        fail(err)


@app.command()
def run(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Run the pipeline: version data, split, train the baseline, evaluate, register in MLflow.
    Every step is cached by content: a re-run with nothing changed trains nothing."""
    from flows.pipeline import genie_run

    settings = settings_from(params, set_)
    try:
        typer.echo(json.dumps(genie_run(settings), indent=2))
    except (ValueError, OSError, RuntimeError) as err:
        fail(err)


@app.command()
def config(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Print the validated configuration, defaults filled in."""
    import yaml

    typer.echo(yaml.safe_dump(settings_from(params, set_).model_dump(mode="json"), sort_keys=False))


def main() -> None:  # pragma: no cover
    sys.exit(app())
