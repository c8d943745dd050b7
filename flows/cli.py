"""The `genie` command line: each command loads the settings, runs one flow and prints its summary."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer

from models.config import ConfigError, Settings, load_settings

QUIET = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
         "DVC_NO_ANALYTICS": "1", "PREFECT_RESULTS_LOCAL_STORAGE_PATH": ".genie/prefect-results"}  # offline, quiet

app = typer.Typer(help="genie-flow: generated hard negatives (GeNIe) for image classifiers, as tracked workflows.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
benchmark = typer.Typer(help="Benchmarks: GeNIe against the simpler alternatives (few-shot, long-tail) and generation "
                        "throughput. They print figures; `genie report` renders the first two as a page.",
                        no_args_is_help=True)
app.add_typer(benchmark, name="benchmark")

Params = Annotated[Path, typer.Option("--params", "-p", help="the configuration file")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="stop at once if another run holds the dataset's work folder")]
Set = Annotated[Optional[list[str]], typer.Option(
    "--set", "-s", metavar="KEY=VALUE", help="override a key of params.yaml, e.g. classifier.epochs=3")]


@app.callback()
def environment() -> None:
    """Set the quiet defaults (a variable already set wins) before a command imports Prefect, MLflow or DVC."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, os.path.abspath(value) if key.endswith("_PATH") else value)


@contextmanager
def errors():
    """The one error mapping: a bad configuration exits 2, bad input or a failed step exits 1, each as one line."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    except (ValueError, OSError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None


def settings(params: Path, overrides: list[str] | None) -> Settings:
    with errors():
        return load_settings(params, overrides or [])


def run_flow(flow, config: Settings, **kwargs):
    with errors():
        return flow(config, **kwargs)


def show(result) -> None:
    typer.echo(json.dumps(result, indent=2, default=str))


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

    config = settings(params, set_)
    show(run_flow(with_runner(genie_run, config), config, until=until, wait=not no_wait))


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

        genie_nightly.serve(
            name=name, schedule=Cron(cron or config.schedule.cron, timezone=config.schedule.timezone),
            parameters={"params": str(params.resolve()), "overrides": set_ or [], "until": until},
            tags=["genie-flow", config.dataset.name],
            limit=1, global_limit=1,  # one nightly run at a time, also across servers of this deployment
        )


@app.command()
def promote(version: Annotated[str, typer.Argument(help="the model version to make champion")],
            params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Make a given version the champion by hand (the one it replaces becomes previous-champion); this also
    clears a rollback mark, which otherwise keeps a version from being crowned automatically."""
    from tasks.registry import promote_by_hand
    from tasks.tracking import configure

    name = settings(params, set_).registered_model
    configure()
    with errors():
        try:
            before = promote_by_hand(name, version)
        except Exception as err:  # MLflow says which version is unknown
            raise ValueError(f"{name} version {version}: {str(err).splitlines()[0]}") from None
    typer.echo(f"{name}: champion is version {version} (was {before})")


@app.command()
def rollback(reason: Annotated[str, typer.Option(help="why, kept as a tag on the demoted version")] = "by hand",
             params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Give the champion alias back to the previous champion. The demoted version is tagged rolled_back and no
    night promotes it again; only `genie promote VERSION` can."""
    from tasks.registry import rollback as roll_back
    from tasks.tracking import configure

    name = settings(params, set_).registered_model
    configure()
    with errors():
        demoted, champion = roll_back(name, reason)
    typer.echo(f"{name}: champion is version {champion} again; version {demoted} is marked rolled back ({reason})")


@app.command()
def lineage(reference: Annotated[str, typer.Argument(help="<model name>@<alias or version>, "
                                                     "e.g. digits-classifier@champion")]) -> None:
    """What made a model: dataset and generated-data digests, generator, selection, config, commit, runs."""
    from tasks.registry import lineage as trace
    from tasks.tracking import configure

    configure()
    with errors():
        show(trace(reference))


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
    method: Annotated[str, typer.Option(help="genie, genie-ada, img2img or txt2img")] = "genie",
    per_class: Annotated[int, typer.Option(min=1, help="edits per target class, sources drawn from the other classes")] = 10,
    ratio: Annotated[Optional[float], typer.Option(help="noise ratio r (genie: genie.noise_ratio, img2img: first of genie.img2img_ratios)")] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="CSV with columns source,target instead of a per-class budget")] = None,
    out: Annotated[Optional[Path], typer.Option(help="output folder (default artifacts/<dataset>/generated); one sub-folder per method")] = None,
    no_wait: NoWait = False, params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """Generate hard negatives: one PNG per edit named by its content key (in key-prefix sub-folders), its rows
    in manifest/ (read them with models.edit_folder.edits).
    Edits already made are skipped, so a re-run or a resumed run makes only what is missing."""
    from flows.generation import genie_generate
    from models.editing import read_pairs

    config = settings(params, set_)
    with errors():
        pair_list = read_pairs(pairs) if pairs is not None else None
    show(run_flow(genie_generate, config, method=method, per_class=per_class, ratio=ratio, pairs=pair_list,
                  out_dir=out, wait=not no_wait))


@app.command()
def quality(
    samples_per_class: Annotated[int, typer.Option(min=1, help="text-to-image samples per class")] = 20,
    pairs: Annotated[int, typer.Option(min=1, help="random (source, target) pairs for the GeNIe edits")] = 100,
    params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """Judge the generator with a classifier trained only on real images: text-to-image label accuracy
    and the share of GeNIe edits judged as the target at r = 0.3, 0.5, 0.8. Logged to MLflow."""
    from flows.generation import genie_quality

    show(run_flow(genie_quality, settings(params, set_), samples_per_class=samples_per_class, pairs=pairs))


@benchmark.command("few-shot")
def benchmark_few_shot(params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """N-way K-shot episodes on the novel classes (benchmark.few_shot), a frozen extractor trained on the base
    classes, logistic regression; none, traditional, Img2Img, Txt2Img, GeNIe at each r and GeNIe-Ada with the
    same extra images per class. Once per benchmark.generator_seeds, each with its own generator and extractor:
    means with 95% intervals across seeds and within a seed. Writes artifacts/<dataset>/benchmark/few-shot/
    and an MLflow run."""
    from flows.few_shot import genie_benchmark_few_shot

    show_table(run_flow(genie_benchmark_few_shot, settings(params, set_)))


@benchmark.command("long-tail")
def benchmark_long_tail(params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Fine-tune on a long-tailed train split (benchmark.long_tail): real only vs confusion-driven GeNIe and
    GeNIe-Ada (also filtered) vs Txt2Img and Img2Img, equal budgets per tail class. Once per
    benchmark.generator_seeds, each with its own subsample, generator and classifiers: means with 95% intervals
    across seeds and within a seed (its test images). Writes artifacts/<dataset>/benchmark/long-tail/ and an
    MLflow run."""
    from flows.long_tail import genie_benchmark_long_tail

    show_table(run_flow(genie_benchmark_long_tail, settings(params, set_)))


@benchmark.command("ada")
def benchmark_ada(params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """GeNIe-Ada fast against exact on benchmark.ada.pairs held-out (test) sources: how often fast picks exact's
    r* (exactly, within 0.1), beside exact at twice the sampler steps (how much exact's own choice moves), and UNet
    evaluations and seconds per kept image for each and GeNIe; with the few-shot benchmark's paired accuracy of
    fast and exact when it has run. Writes artifacts/<dataset>/benchmark/ada/."""
    from flows.ada import genie_benchmark_ada

    result = run_flow(genie_benchmark_ada, settings(params, set_))
    show_table(result)
    for name, agree in (("fast", result["agreement"]), ("exact at 2x steps", result["exact_2x_steps_agreement"])):
        if agree:
            typer.echo(f"{name} picks exact's r* for {agree['same']:.1%} of {agree['pairs']} held-out pairs, "
                       f"{agree['within_0.1']:.1%} within 0.1 (mean r*: exact {agree['mean_ratio_exact']:.3f}, "
                       f"{name} {agree['mean_ratio_other']:.3f})")
    for row in result["few_shot"]:
        typer.echo(f"few-shot {row['shots']}-shot over {row['seeds']} generator seed(s): exact {row['exact']:.2%}, "
                   f"fast {row['fast']:.2%}; fast - exact {row['fast_minus_exact']:+.2%} ± {row['paired_ci95']:.2%} "
                   f"(paired, {row['episodes']} episodes a seed), ± {row['across_ci95']:.2%} (across seeds)")
    if not result["few_shot"]:
        typer.echo("few-shot accuracy of fast and exact: run `genie benchmark few-shot`, then this again")


def show_table(result: dict) -> None:
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        typer.echo(pd.DataFrame(result["table"]).to_string(index=False))
    typer.echo(f"results: {result['out_dir']} (MLflow run {result['run_id']}); render them with `genie report`")


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
    from models.benchmarks.results import load_both

    config = settings(params, set_)
    with errors():
        load_both(config)  # no results: one line, before a flow starts
    show(run_flow(genie_report, config, out=out, screenshot=screenshot))


@benchmark.command("generate")
def benchmark_generate(
    arch: Annotated[str, typer.Option(help="embedded (the trained default), sd15 (random weights, full SD 1.5 size; "
                                      "use a GPU) or sd15-tiny")] = "embedded",
    resolution: Annotated[int, typer.Option(help="image side for the sd15 architectures")] = 512,
    images: Annotated[int, typer.Option(min=1, help="edits per method")] = 64,
    reference: Annotated[bool, typer.Option(help="also time the reference way: one pipeline call per image")] = True,
    params: Params = Path("params.yaml"), set_: Set = None,
) -> None:
    """Images per second and UNet evaluations per kept image, per method at its configured r; with --reference,
    the speed-up of batched GeNIe over batch-1 calls at the same r, in the same run."""
    from flows.throughput import genie_benchmark_generate
    from models.benchmarks.throughput import speedup

    if arch not in ("embedded", "sd15", "sd15-tiny"):
        with errors():
            raise ValueError(f"--arch {arch}: choose embedded, sd15 or sd15-tiny")
    rows = run_flow(genie_benchmark_generate, settings(params, set_), arch=arch, resolution=resolution,
                    images=images, reference=reference)
    typer.echo(f"{'method':28} {'r':>4} {'device':16} {'batch':>5} {'images':>6} {'img/s':>8} {'UNet evals/img':>15}")
    for row in rows:
        typer.echo(f"{row['method']:28} {row['ratio'] or '-':>4} {row['device']:16} {row['batch']:>5} "
                   f"{row['images']:>6} {row['images_per_second']:>8.2f} {row['unet_evals_per_image']:>15.0f}")
    if speedup(rows):
        typer.echo(f"batched genie is {speedup(rows):.1f}x the reference throughput, both at the same r")


@benchmark.command("scale", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                   add_help_option=False)
def benchmark_scale(context: typer.Context) -> None:
    """How a night's cost grows with the data: cold nights on drawn ImageFolders of 20 / 100 / 400 classes and 320
    edits added to edit folders of 0 to 200k edits; each step's seconds, peak RSS, growth exponents (about 25 min
    on 2 CPU cores). `genie benchmark scale --help` lists its options (sizes, --code for another checkout)."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"
    runpy.run_path(str(script))["main"](context.args)


@app.command()
def config(params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """Print the validated configuration, defaults filled in."""
    import yaml

    typer.echo(yaml.safe_dump(settings(params, set_).model_dump(mode="json"), sort_keys=False))
