"""`genie benchmark ada`: GeNIe-Ada fast against exact on held-out pairs, with GeNIe as the yardstick.
Writes artifacts/<dataset>/benchmark/ada/ and an MLflow run."""
from __future__ import annotations

import time

import pandas as pd
from prefect import flow, get_run_logger

from flows.stages import StepLog, ensure_generator, generate_edits, one_writer, prepare, train_baseline
from models import methods
from models.benchmarks import ada
from models.benchmarks.results import benchmark_dir, cost_rows, load, protocol, save_facts, write_results
from models.config import Settings
from models.dataset import read_manifest
from tasks.benchmark import judge_images
from tasks.tracking import git_commit, record_run


@flow(name="genie-benchmark-ada")
@one_writer
def genie_benchmark_ada(settings: Settings) -> dict:
    """The same held-out (source, target) pairs through GeNIe, exact Ada and fast Ada, each kept image's cost,
    how often fast picks exact's r*, and each mode against fixed r on the trade-off between keeping the source and
    showing the target; the few-shot benchmark's paired accuracy when it has run."""
    started = time.monotonic()
    cfg, seed = settings.benchmark.ada, settings.generator.seed
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    ensure_generator(settings, data, split, step_log)
    classifier = train_baseline(settings, data, split, step_log)  # Ada's extractor, as in the nightly run
    pairs = ada.held_out_pairs(read_manifest(split["manifest"]), settings.dataset.path, split.info["classes"],
                               cfg.pairs, cfg.seed)
    costs, choices = [], []
    for label, method, mode, times in ada.METHODS:
        run = settings.model_copy(update={
            "genie": settings.genie.model_copy(update={"ada_mode": mode or "exact"}),
            "generator": settings.generator.model_copy(update={"steps": settings.generator.steps * times})})
        edits = ada.held_out_edits(pairs, method, methods.get(method).default_ratio(settings.genie), seed)
        name = label.replace(" ", "-")
        folder = benchmark_dir(settings) / "generated" / name
        made, _ = generate_edits(run, data, split, edits, folder, step_log, f"generate-{name}",
                                 extractor=classifier if mode else None, shard_size=settings.benchmark.shard_size)
        costs.append(cost_rows(made, {label: edits}))
        if mode:
            choices += ada.choice_rows(made, edits, mode if times == 1 else f"{mode} {times}x steps")
    table = ada.cost_table(pd.concat(costs, ignore_index=True))
    choices = pd.DataFrame(choices)
    # the trade-off: GeNIe at every candidate r of the same pairs, judged by a classifier of real images that is not
    # Ada's extractor (another seed), and each image's distance to its source
    sweep = [e for r in settings.genie.ada_ratios for e in ada.held_out_edits(pairs, "genie", r, seed)]
    made, _ = generate_edits(settings, data, split, sweep, benchmark_dir(settings) / "generated" / "genie", step_log,
                             "generate-sweep", shard_size=settings.benchmark.shard_size)
    judge = train_baseline(settings, data, split, step_log, label="train-judge", seed_offset=1,
                           view=benchmark_dir(settings) / "ada" / "judge")
    candidates = judge_images(judge, ada.candidate_rows(sweep, made))
    trade_off = ada.trade_off(candidates.assign(target_judged=candidates["outcome"] == "as label"), choices)
    mode, why = ada.default_mode(trade_off, table)
    agreement = ada.ada_agreement(choices, keys=("source", "target"))
    self_agreement = ada.ada_agreement(choices, keys=("source", "target"), other="exact 2x steps")
    few = ada.few_shot_rows(load(benchmark_dir(settings) / "few-shot"))
    out = benchmark_dir(settings) / "ada"
    facts = protocol(settings, started, git_commit(), benchmark="ada", pairs=len(pairs), pair_seed=cfg.seed,
                     batch_size=settings.generator.batch_size, step_log=step_log,
                     agreement=ada.summary(agreement), exact_2x_steps_agreement=ada.summary(self_agreement),
                     probe_steps=settings.genie.ada_probe_steps, judge_val_accuracy=judge.info["best_val_accuracy"],
                     default_mode={"mode": mode, "why": why})
    tables = {"table": table, "choices": choices, "few_shot": few, "trade_off": trade_off, "candidates": candidates}
    if agreement:
        tables["crosstab"] = agreement["crosstab"]
    files = write_results(out, tables, facts)
    run_id = record_run(settings.dataset.name, data, "benchmark-ada", params={"ada.pairs": len(pairs), "ada.seed": cfg.seed},
                        metrics=ada.metrics(facts, table, trade_off), artifacts=files, tags={"benchmark": "ada"})
    save_facts(out, facts | {"run_id": run_id})
    get_run_logger().info("ada benchmark in %.0f s -> %s", time.monotonic() - started, out)
    return {"run_id": run_id, "out_dir": out.as_posix(), "step_log": step_log, "table": table.to_dict("records"),
            "agreement": facts["agreement"], "exact_2x_steps_agreement": facts["exact_2x_steps_agreement"],
            "few_shot": few.to_dict("records"), "trade_off": trade_off.to_dict("records"),
            "default_mode": facts["default_mode"]}
