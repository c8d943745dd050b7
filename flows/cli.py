"""The `genie` command line: each command loads the settings, runs one flow and prints its summary."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from flows.cli_backup import backup, restore
from flows.cli_benchmark import benchmark
from flows.cli_options import (
    DEBUG,
    NoWait,
    Params,
    Retrain,
    Set,
    begin_server,
    errors,
    in_flow,
    run_flow,
    settings,
    show,
)
from flows.cli_stack import stack
from flows.environment import use_defaults
from models import methods
from models.config import Settings
from models.locks import exclusive

app = typer.Typer(help="genie-flow: generated hard negatives (GeNIe) for image classifiers, as tracked workflows.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(benchmark, name="benchmark")
app.add_typer(stack, name="stack")
app.command()(backup)
app.command()(restore)


FLOW_COMMANDS = {"prepare", "run", "reproduce", "train-generator", "generate", "quality", "report"}


@app.callback()
def environment(context: typer.Context,
                debug: Annotated[bool, typer.Option("--debug", help="print a failed step's traceback (without it: "
                                                    "one `error:` line, the traceback in .genie/logs/errors.log)")]
                = False) -> None:
    """The process's defaults (a variable already set wins) before a command imports Prefect, MLflow or DVC."""
    DEBUG["on"] = debug
    use_defaults()
    begin_server(context, FLOW_COMMANDS)


@app.command()
def prepare(params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Export the embedded digits (if configured and absent), version the dataset with DVC,
    validate every file and write the stratified split manifest."""
    from flows.pipeline import genie_prepare

    show(run_flow(genie_prepare, settings(params, set_)))


@app.command()
def run(
    until: Annotated[str, typer.Option(help="stop after this stage: prepare, train-generator, baseline, select, "
                                       "generate, finetune or evaluate")] = "evaluate",
    no_wait: NoWait = False, params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """The nightly pipeline: prepare -> train-generator -> baseline -> select (confusion-driven) ->
    generate (hard negatives) -> finetune -> evaluate -> promote (only if the challenger wins).
    Every step is cached by content: a re-run with nothing changed recomputes nothing."""
    from flows.pipeline import genie_run
    from flows.runner import with_runner
    from flows.servers.preflight import check_servers

    config = settings(params, set_)
    with errors():
        check_servers(config.dvc.remote.url)
    summary = run_flow(with_runner(genie_run, config), config, until=until, wait=not no_wait)
    show(summary)
    if "decision" in summary:
        typer.echo(where_to_look(config), err=True)


def where_to_look(config: Settings) -> str:
    """The commands to type after a night, on stderr (stdout stays the summary's JSON)."""
    store = os.environ.get("MLFLOW_TRACKING_URI", "")
    ui = f"open {store}" if store.startswith("http") else f"mlflow ui --backend-store-uri {store}"
    model = config.registered_model
    rows = [(ui, "runs, metrics and the registry"),
            (f"genie lineage {model}@champion", "what made the champion: data, generator, selection"),
            ("genie decisions", "every move of champion, who and why"),
            (f"genie reproduce {model}@champion", "make it again and compare the weights"),
            ("genie benchmark long-tail && genie report", "the evidence against the baselines, as one HTML page")]
    return "\n".join(["where to look next:", *(f"  {command:<56} {what}" for command, what in rows)])


@app.command()
def serve(
    name: Annotated[str, typer.Option(help="deployment name")] = "nightly",
    cron: Annotated[Optional[str], typer.Option(help="cron schedule (default: schedule.cron, 02:00 nightly)")] = None,
    until: Annotated[str, typer.Option(help="last stage of each scheduled run")] = "evaluate",
    params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """Register the pipeline as a Prefect deployment with a cron schedule and serve its runs.

    Needs a Prefect server: run `prefect server start` and set PREFECT_API_URL (see README).
    Each scheduled run reads the configuration file afresh. Stop with Ctrl-C."""
    config = settings(params, set_)  # validate now rather than at 02:00
    with errors():
        if not os.environ.get("PREFECT_API_URL"):
            raise RuntimeError("genie serve needs a Prefect server: run `prefect server start`, then "
                               "export PREFECT_API_URL=http://127.0.0.1:4200/api")
        from prefect.schedules import Cron

        from flows.pipeline import genie_nightly
        from models.params import night_overrides

        genie_nightly.serve(
            name=name, schedule=Cron(cron or config.schedule.cron, timezone=config.schedule.timezone),
            parameters={"params": str(params.resolve()), "overrides": night_overrides(set_ or [], str(params.resolve()),
                                                                                      Path.cwd()), "until": until},
            tags=["genie-flow", config.dataset.name],
            limit=1, global_limit=1,  # one nightly run at a time, also across servers of this deployment
        )


@app.command()
def deploy(
    pool: Annotated[str, typer.Option(help="the process work pool (created if absent)")] = "genie",
    name: Annotated[str, typer.Option(help="deployment name")] = "nightly",
    cron: Annotated[Optional[str], typer.Option(help="cron schedule (default: schedule.cron)")] = None,
    until: Annotated[str, typer.Option(help="last stage of each scheduled run")] = "evaluate",
    params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """The nightly deployment in a process work pool on the Prefect server (PREFECT_API_URL), for workers on any
    machine: `genie worker --pool genie` in its project folder. One night runs at a time (and with
    GENIE_DATABASE_URL one per dataset across machines). `genie serve` stays for one machine."""
    from flows.deploy import deploy_nightly

    config = settings(params, set_)
    with errors():
        if not os.environ.get("PREFECT_API_URL"):
            raise RuntimeError("genie deploy needs a Prefect server: `eval \"$(genie stack up)\"` or set PREFECT_API_URL")
        show(deploy_nightly(config, pool, name, cron, params, set_ or [], until))


@app.command()
def worker(
    pool: Annotated[str, typer.Option(help="the process work pool `genie deploy` made")] = "genie",
    project: Annotated[Path, typer.Option(help="this machine's project folder, where each night runs")] = Path("."),
    run_once: Annotated[bool, typer.Option("--run-once", help="take the runs due now, then stop")] = False,
    name: Annotated[Optional[str], typer.Option(help="the worker's name in the Prefect UI")] = None,
) -> None:
    """Run the pool's nights on this machine (Prefect's process worker, PREFECT_API_URL and PREFECT_API_AUTH_STRING
    from your environment file). It runs genie's own nights only: a flow run of any other deployment, with pull
    steps or changed job variables, is cancelled with a log line naming the deployment, and nothing of it runs."""
    import asyncio

    from flows.servers.preflight import check_servers
    from flows.worker import work

    with errors():
        if not os.environ.get("PREFECT_API_URL"):
            raise RuntimeError("genie worker needs the team's Prefect server: source your environment file "
                               "(`genie stack user add NAME --role worker`) or set PREFECT_API_URL")
        check_servers()
    asyncio.run(work(pool, project, run_once, name))


@app.command()
def promote(version: Annotated[str, typer.Argument(help="the model version to make champion")],
            params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Make a given version the champion by hand (the one it replaces becomes previous-champion); this also
    clears a rollback mark, which otherwise keeps a version from being crowned automatically."""
    from tasks.champion import promote_by_hand

    config = settings(params, set_)
    name = config.registered_model
    # not while a night runs: the dataset's lock
    with errors("move champion"), exclusive(config.workdir, config.dataset.name, "genie promote"):
        try:
            before = promote_by_hand(name, version)
        except Exception as err:  # MLflow says which version is unknown, or that this user may not
            raise ValueError(f"{name} version {version}: {str(err).splitlines()[0]}") from None
    typer.echo(f"{name}: champion is version {version} (was {before})")


@app.command()
def rollback(reason: Annotated[str, typer.Option(help="why, kept as a tag on the demoted version")] = "by hand",
             params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Give the champion alias back to the previous champion. The demoted version is tagged rolled_back and no
    night promotes it again; only `genie promote VERSION` can."""
    from flows.notify import notify
    from tasks.champion import rollback as roll_back
    from tasks.champion import who

    config = settings(params, set_)
    name = config.registered_model
    with errors("move champion"), exclusive(config.workdir, config.dataset.name, "genie rollback"):
        demoted, champion = roll_back(name, reason)
    said = f"{name}: champion is version {champion} again; version {demoted} is marked rolled back ({reason})"
    typer.echo(said)
    notify(config, "rollback", f"{said}, by {who()}")


@app.command()
def decisions(last: Annotated[int, typer.Option(help="how many, newest first")] = 10,
              params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """The champion's decision log: each move of the alias (first, promoted, by hand, rolled back), who made it,
    when, from which run, and the version it replaced. The alias always points where the last one put it."""
    from tasks.champion import decision_log

    with errors():
        show(decision_log(settings(params, set_).registered_model, last))


@app.command()
def history(last: Annotated[int, typer.Option(help="how many nights, the newest; 0: all")] = 30,
            html: Annotated[Optional[Path], typer.Option(help="also draw them into this self-contained HTML page")]
            = None,
            screenshot: Annotated[Optional[Path], typer.Option(help="with --html: open the page in headless "
                                                               "chromium, save a screenshot, check every figure")]
            = None,
            params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """One line per night, oldest first: date, data version, images and new images, edits made, champion and
    challenger test accuracy, the challenger's few-shot and worst-group accuracy, the decision, seconds. Read
    from MLflow (the local store, or the team's server)."""
    from models.history_page import lines, render
    from tasks.history import class_accuracy, nights

    config = settings(params, set_)
    with errors():
        frame = nights(config.dataset.name, config.registered_model, last or None)
        typer.echo(lines(frame))
        if html is None or frame.empty:
            return
        page = render(frame, class_accuracy(list(frame["run_id"])), f"{config.dataset.name}: the nights")
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(page)
        typer.echo(f"history page: {html} ({len(page) / 1e3:.0f} kB)")
        if screenshot is not None:
            from models.benchmarks.browser import render_whole

            shown = render_whole(html, screenshot, height=1800)
            typer.echo(f"screenshot: {screenshot} ({shown['images_loaded']} figures rendered)")


@app.command()
def gc(dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would go and its bytes; delete nothing")]
       = False,
       every: Annotated[bool, typer.Option("--list", help="also list every id and path that goes, one a line")]
       = False,
       remote: Annotated[bool, typer.Option("--remote", help="also the DVC remote (dvc.remote.url, a folder)")] = False,
       no_wait: NoWait = False, params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Free space by `retention` in params.yaml. Kept: every classifier version with an alias, the challenger
    waiting for a person, the versions of the last keep_nights nights that reached evaluate, and whatever a kept
    version names (its base version, data, images); each night's own run, every generator and adapter. DVC objects
    go only when no version of any model and no git ref names them, once older than grace_hours. A read error stops
    it before anything is deleted. Holds the dataset like a night; exits 1 when a deletion failed."""
    from tasks.deletion import collect

    config = settings(params, set_)
    with errors():
        if remote and not config.dvc.remote.url:
            raise ValueError("--remote: dvc.remote.url is empty in params.yaml, so there is no remote to collect")
        with exclusive(config.workdir, config.dataset.name, "genie gc", not no_wait):
            found = collect(config.registered_model, config.dataset.name, config.workdir, config.retention,
                            config.dvc.remote.url if remote else None, dry_run)
        typer.echo(found.lines(done=not dry_run, every=every))
    if found.failed:
        raise typer.Exit(1)


@app.command()
def lineage(reference: Annotated[str, typer.Argument(help="<model name>@<alias or version>, "
                                                     "e.g. digits-classifier@champion")]) -> None:
    """What made a model: dataset and generated-data digests, generator, selection, config, commit, runs."""
    from tasks.registry import lineage as trace

    with errors():
        show(trace(reference))


@app.command()
def reproduce(reference: Annotated[str, typer.Argument(help="<model name>@<alias or version>, "
                                                       "e.g. digits-classifier@champion")],
              folder: Annotated[Path, typer.Option(help="where the fetched data and the new weights go")] = Path(
                  ".genie/reproduce"),
              remote: Annotated[Optional[str], typer.Option(help="the DVC remote to fetch from (default: the one "
                                                            "the version's night pushed to)")] = None) -> None:
    """Make a registered classifier again from what its version records (data and generated images from the DVC
    remote, generator, configuration), and print each weights digest beside the registered one; exits 1 when they
    differ on the machine kind that trained it."""
    from flows.reproduce import genie_reproduce

    with in_flow():
        summary = genie_reproduce(reference, folder, remote)
    show(summary)
    if summary["verdict"].endswith("not reproducible"):
        raise typer.Exit(1)


@app.command("train-generator")
def train_generator(force: Annotated[bool, typer.Option(help="retrain even where the policy would reuse")] = False,
                    params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Train the embedded text-to-image diffusion model on the train split, save it as a diffusers pipeline folder
    (artifacts/<dataset>/generator) and register it as <dataset>-generator@current. A registered generator is
    reused unless generator.retrain says otherwise (class set, prompt or budget changed, data grown, age)."""
    from flows.generation import genie_train_generator

    show(run_flow(genie_train_generator, settings(params, set_), force=force))


@app.command()
def generate(
    method: Annotated[str, typer.Option(help="; ".join(f"{m.name}: {m.summary}" for m in map(methods.get, methods.names())))] = "genie",
    per_class: Annotated[int, typer.Option(min=1, help="edits per target class, sources drawn from the other classes")] = 10,
    ratio: Annotated[Optional[float], typer.Option(help="noise ratio r, for the methods that take one (default: the "
                                                   "method's own, e.g. genie.noise_ratio)")] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="CSV with columns source,target instead of a per-class budget")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder (default artifacts/<dataset>/generated); one sub-folder per method")] = None,
    retrain: Retrain = False, no_wait: NoWait = False, params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """Generate hard negatives: one PNG per edit named by its content key (in key-prefix sub-folders), its rows
    in manifest/ (read them with models.edit_folder.edits).
    Edits already made are skipped, so a re-run or a resumed run makes only what is missing."""
    from flows.generation import genie_generate
    from models.editing import read_pairs

    config = settings(params, set_)
    with errors():
        methods.get(method)  # before a flow starts: one line naming the valid methods
        pair_list = read_pairs(pairs) if pairs is not None else None
    show(run_flow(genie_generate, config, method=method, per_class=per_class, ratio=ratio, pairs=pair_list,
                  out_dir=out, wait=not no_wait, retrain=retrain))


@app.command()
def quality(
    samples_per_class: Annotated[int, typer.Option(min=1, help="text-to-image samples per class")] = 20,
    pairs: Annotated[int, typer.Option(min=1, help="random (source, target) pairs for the GeNIe edits")] = 100,
    retrain: Retrain = False, params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """Judge the generator with a classifier trained only on real images: text-to-image label accuracy
    and the share of GeNIe edits judged as the target at r = 0.3, 0.5, 0.8. Logged to MLflow."""
    from flows.generation import genie_quality

    show(run_flow(genie_quality, settings(params, set_), samples_per_class=samples_per_class, pairs=pairs,
                  retrain=retrain))


@app.command()
def report(
    out: Annotated[Optional[Path], typer.Option(help="the HTML file (default artifacts/<dataset>/benchmark/report.html)")] = None,
    screenshot: Annotated[Optional[Path], typer.Option(help="also open the page in headless chromium and save a "
                                                       "screenshot here, checking that every image renders")] = None,
    params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """One self-contained HTML page (images embedded) with the benchmarks' tables, plots, image grids, failure
    cases, costs, protocol and limits; logged to the benchmarks' MLflow runs."""
    from flows.report import genie_report
    from models.benchmarks.results import load_reported

    config = settings(params, set_)
    with errors():
        load_reported(config)  # no results: one line, before a flow starts
    show(run_flow(genie_report, config, out=out, screenshot=screenshot))


@app.command()
def config(params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Print the validated configuration, defaults filled in."""
    import yaml

    typer.echo(yaml.safe_dump(settings(params, set_).model_dump(mode="json"), sort_keys=False))
