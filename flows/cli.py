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


def fail(err: Exception | str) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(1) from None


@app.command()
def prepare(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Export the embedded digits (if configured and absent), version the dataset with DVC,
    validate every file and write the stratified split manifest."""
    from flows.pipeline import genie_prepare

    _run(genie_prepare, settings_from(params, set_))


@app.command()
def run(
    until: Annotated[str, typer.Option(help="stop after this stage: prepare, train-generator, baseline, select, "
                                       "generate, finetune or evaluate")] = "evaluate",
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """The nightly pipeline: prepare -> train-generator -> baseline -> select (confusion-driven) ->
    generate (hard negatives) -> finetune -> evaluate -> promote (only if the challenger wins).
    Every step is cached by content: a re-run with nothing changed recomputes nothing."""
    from flows.pipeline import genie_run
    from flows.runner import with_runner

    settings = settings_from(params, set_)
    _run(with_runner(genie_run, settings), settings, until=until)


@app.command()
def serve(
    name: Annotated[str, typer.Option(help="deployment name")] = "nightly",
    cron: Annotated[Optional[str], typer.Option(help="cron schedule (default: schedule.cron, 02:00 nightly)")] = None,
    until: Annotated[str, typer.Option(help="last stage of each scheduled run")] = "evaluate",
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Register the pipeline as a Prefect deployment with a cron schedule and serve its runs.

    Needs a Prefect server: run `prefect server start` and set PREFECT_API_URL (see README).
    Each scheduled run reads the configuration file afresh. Stop with Ctrl-C."""
    from flows.pipeline import genie_nightly

    settings = settings_from(params, set_)  # validate now rather than at 02:00
    if not os.environ.get("PREFECT_API_URL"):
        fail("genie serve needs a Prefect server: run `prefect server start`, then "
             "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    from prefect.schedules import Cron

    genie_nightly.serve(
        name=name,
        schedule=Cron(cron or settings.schedule.cron, timezone=settings.schedule.timezone),
        parameters={"params": str(params.resolve()), "overrides": set_ or [], "until": until},
        tags=["genie-flow", settings.dataset.name],
    )


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="the model version to make champion")],
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Make a given version the champion by hand (the one it replaces becomes previous-champion)."""
    from tasks.registry import set_champion
    from tasks.tracking import configure

    settings = settings_from(params, set_)
    configure()
    try:
        before = set_champion(settings.registered_model, version)
    except Exception as err:  # MLflow says which version is unknown
        fail(f"{settings.registered_model} version {version}: {str(err).splitlines()[0]}")
    typer.echo(f"{settings.registered_model}: champion is version {version} (was {before})")


@app.command()
def rollback(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Give the champion alias back to the previous champion."""
    from tasks.registry import rollback as roll_back
    from tasks.tracking import configure

    settings = settings_from(params, set_)
    configure()
    try:
        version = roll_back(settings.registered_model)
    except ValueError as err:
        fail(err)
    typer.echo(f"{settings.registered_model}: champion is version {version} again")


@app.command()
def lineage(reference: Annotated[str, typer.Argument(help="<model name>@<alias or version>, e.g. digits-classifier@champion")]) -> None:
    """What made a model: dataset and generated-data digests, generator, selection, config, commit, runs."""
    from tasks.registry import lineage as trace
    from tasks.tracking import configure

    configure()
    try:
        typer.echo(json.dumps(trace(reference), indent=2))
    except ValueError as err:
        fail(err)


@app.command("train-generator")
def train_generator(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Train the embedded text-to-image diffusion model on the dataset's train split and save it as a
    diffusers Stable Diffusion pipeline folder (default artifacts/<dataset>/generator). Cached by
    content: a second call with nothing changed returns at once."""
    from flows.generation import genie_train_generator

    _run(genie_train_generator, settings_from(params, set_))


@app.command()
def generate(
    method: Annotated[str, typer.Option(help="genie, genie-ada, img2img or txt2img")] = "genie",
    per_class: Annotated[int, typer.Option(min=1, help="edits per target class, sources drawn from the other classes")] = 10,
    ratio: Annotated[Optional[float], typer.Option(help="noise ratio r (genie: genie.noise_ratio, img2img: first of genie.img2img_ratios)")] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="CSV with columns source,target instead of a per-class budget")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder (default artifacts/<dataset>/generated); one sub-folder per method")] = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Generate hard negatives: one PNG per edit named by its content key, plus manifest.csv.
    Edits already made are skipped, so a re-run or a resumed run makes only what is missing."""
    from flows.generation import genie_generate

    settings = settings_from(params, set_)
    pair_list = None
    if pairs is not None:
        pair_list = _read_pairs(pairs)
    _run(genie_generate, settings, method=method, per_class=per_class, ratio=ratio, pairs=pair_list, out_dir=out)


@app.command()
def quality(
    samples_per_class: Annotated[int, typer.Option(min=1, help="text-to-image samples per class")] = 20,
    pairs: Annotated[int, typer.Option(min=1, help="random (source, target) pairs for the GeNIe edits")] = 100,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Judge the generator with a classifier trained only on real images: text-to-image label accuracy
    and the share of GeNIe edits judged as the target at r = 0.3, 0.5, 0.8. Logged to MLflow."""
    from flows.generation import genie_quality

    _run(genie_quality, settings_from(params, set_), samples_per_class=samples_per_class, pairs=pairs)


bench = typer.Typer(help="Benchmarks: GeNIe against the simpler alternatives (few-shot, long-tail) and generation "
                    "throughput. They print figures; `genie report` renders the first two as a page.",
                    no_args_is_help=True)
app.add_typer(bench, name="benchmark")
app.add_typer(bench, name="bench", hidden=True)


@bench.command("few-shot")
def benchmark_few_shot(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """N-way K-shot episodes on the novel classes (benchmark.few_shot: default 5-way 1- and 5-shot, 100 episodes,
    15 queries per class) with a frozen extractor trained on the base classes only and logistic regression.
    Methods with the same extra images per class: none, traditional augmentation, Img2Img at
    genie.img2img_ratios, Txt2Img, GeNIe at every genie.ada_ratios value, GeNIe-Ada. Generated images are
    cached by content, so a second run and the other benchmark reuse them. Writes
    artifacts/<dataset>/benchmark/few-shot/ and an MLflow run."""
    from flows.benchmark import genie_benchmark_few_shot

    _benchmark(genie_benchmark_few_shot, settings_from(params, set_))


@bench.command("long-tail")
def benchmark_long_tail(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Fine-tune on a long-tailed train split (benchmark.long_tail: imbalance ratio 50, seeds 0 1 2): real images
    only vs confusion-driven GeNIe and GeNIe-Ada (also with the label-consistency filter) vs Txt2Img and Img2Img,
    with equal budgets per tail class. Accuracy overall and on many / medium / few classes, mean ± std over seeds.
    Writes artifacts/<dataset>/benchmark/long-tail/ and an MLflow run."""
    from flows.benchmark import genie_benchmark_long_tail

    _benchmark(genie_benchmark_long_tail, settings_from(params, set_))


def _benchmark(flow, settings: Settings) -> None:
    try:
        result = flow(settings)
    except (ValueError, OSError, RuntimeError) as err:
        fail(err)
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        typer.echo(pd.DataFrame(result["table"]).to_string(index=False))
    typer.echo(f"results: {result['out_dir']} (MLflow run {result['run_id']}); render them with `genie report`")


@app.command()
def report(
    out: Annotated[Optional[Path], typer.Option(help="the HTML file (default artifacts/<dataset>/benchmark/report.html)")] = None,
    screenshot: Annotated[Optional[Path], typer.Option(help="also open the page in headless chromium and save a "
                                                       "screenshot here, checking that every image renders")] = None,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """One self-contained HTML page (images embedded) with the benchmarks' tables, plots, image grids, failure
    cases, costs, protocol and limits; logged to the benchmarks' MLflow runs."""
    from flows.report import genie_report, render, results

    settings = settings_from(params, set_)
    try:
        results(settings)
        result = genie_report(settings, out)
        if screenshot:
            shown = render(Path(result["report"]), screenshot)
            result |= shown
            if shown["images_loaded"] != shown["images_total"] or shown["images_total"] <= 0:
                fail(f"{result['report']}: {shown['images_loaded']} of {shown['images_total']} images rendered")
    except (ValueError, OSError, RuntimeError) as err:
        fail(err)
    typer.echo(json.dumps(result, indent=2))


@bench.command("generate")
def bench_generate(
    arch: Annotated[str, typer.Option(help="embedded (the trained default), sd15 (random weights, full SD 1.5 size; "
                                      "use a GPU) or sd15-tiny")] = "embedded",
    resolution: Annotated[int, typer.Option(help="image side for the sd15 architectures")] = 512,
    images: Annotated[int, typer.Option(min=1, help="edits per method")] = 64,
    reference: Annotated[bool, typer.Option(help="also time the reference way: one pipeline call per image")] = True,
    params: ParamsOption = Path("params.yaml"),
    set_: SetOption = None,
) -> None:
    """Images per second and UNet evaluations per kept image, per method; with --reference, the
    speed-up of batched GeNIe over batch-1 calls in the same run."""
    from flows.bench import genie_bench_generate

    if arch not in ("embedded", "sd15", "sd15-tiny"):
        fail(f"--arch {arch}: choose embedded, sd15 or sd15-tiny")
    try:
        rows = genie_bench_generate(settings_from(params, set_), arch, resolution, images, reference)
    except (ValueError, OSError, RuntimeError) as err:
        fail(err)
    typer.echo(f"{'method':28} {'device':16} {'batch':>5} {'images':>6} {'img/s':>8} {'UNet evals/img':>15}")
    for row in rows:
        typer.echo(f"{row['method']:28} {row['device']:16} {row['batch']:>5} {row['images']:>6} "
                   f"{row['images_per_second']:>8.2f} {row['unet_evals_per_image']:>15.0f}")
    speedup = next((r["speed-up of batched genie"] for r in rows if "speed-up of batched genie" in r), None)
    if speedup:
        typer.echo(f"batched genie is {speedup:.1f}x the reference throughput")


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    import csv

    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as err:
        fail(f"--pairs {path}: {err.strerror}")
    if not rows or not {"source", "target"} <= set(rows[0]):
        fail(f"--pairs {path}: needs a header with columns source,target and at least one row")
    return [(row["source"], row["target"]) for row in rows]


def _run(flow, settings: Settings, **kwargs) -> None:
    try:
        typer.echo(json.dumps(flow(settings, **kwargs), indent=2, default=str))
    except (ValueError, OSError, RuntimeError) as err:
        fail(err)


@app.command()
def config(params: ParamsOption = Path("params.yaml"), set_: SetOption = None) -> None:
    """Print the validated configuration, defaults filled in."""
    import yaml

    typer.echo(yaml.safe_dump(settings_from(params, set_).model_dump(mode="json"), sort_keys=False))


def main() -> None:  # pragma: no cover
    sys.exit(app())
