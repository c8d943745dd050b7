"""`genie benchmark ...`: GeNIe against the simpler alternatives, generation throughput, a night's cost at scale."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flows.cli_options import Params, Set, begin_server, errors, run_flow, settings, show_table

benchmark = typer.Typer(help="Benchmarks: GeNIe against the simpler alternatives (few-shot, long-tail) and generation "
                        "throughput. They print figures; `genie report` renders the first two as a page.",
                        no_args_is_help=True)


@benchmark.callback()
def flows_ahead(context: typer.Context) -> None:
    begin_server(context, {"few-shot", "long-tail", "ada", "generate", "adapt"})


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
    evaluations and seconds per kept image for each and GeNIe; each mode's trade-off against GeNIe at every fixed
    candidate r (share judged the target, distance to the source, paired intervals) and the default it supports;
    with the few-shot benchmark's paired accuracy of fast and exact when it has run. Writes
    artifacts/<dataset>/benchmark/ada/."""
    from flows.ada import genie_benchmark_ada

    result = run_flow(genie_benchmark_ada, settings(params, set_))
    show_table(result)
    typer.echo("trade-off: share judged the target by a real-data classifier (not Ada's extractor) and distance to the "
               "source (RMS, 0..1); lift: points above the fixed-r curve at the same distance, 95% paired interval")
    for row in result["trade_off"]:
        shown = f"{row['variant']:18} " + (f"judged target {row['judged_target']:6.1%}  distance {row['distance']:.3f}"
                                            if row.get("judged_target") == row.get("judged_target") else " " * 45)
        if row.get("lift") == row.get("lift"):  # not NaN
            shown += f"  lift {row['lift'] * 100:+5.1f} ({row['lift_low'] * 100:+.1f}..{row['lift_high'] * 100:+.1f})"
        typer.echo(shown.rstrip())
    typer.echo(f"default supported: {result['default_mode']['mode']} ({result['default_mode']['why']})")
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


@benchmark.command("adapt")
def benchmark_adapt(params: Params = Path("params.yaml"), set_: Set = None) -> None:
    """benchmark.adapt.held_out left out of the embedded generator, then taught back to it by each adapter kind
    (generator.adapter's recipe): seconds against training the generator, and the share of text-to-image samples and
    of GeNIe edits at benchmark.adapt.ratio (towards it, and towards the other classes) that a classifier of real
    images names as prompted. Writes artifacts/<dataset>/benchmark/adapt/."""
    from flows.adapt import genie_benchmark_adapt

    result = run_flow(genie_benchmark_adapt, settings(params, set_))
    show_table(result)
    typer.echo(f"training the generator: {result['retrain_seconds']:.0f} s; of_retrain: an adapter's seconds against it")
