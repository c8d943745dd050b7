"""`genie benchmark few-shot`: N-way K-shot episodes on the novel classes, every method with the
same extra images per class. Writes artifacts/<dataset>/benchmark/few-shot/ and an MLflow run."""
from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger

from flows.replicates import over_generator_seeds
from flows.stages import StepLog, generate_edits, one_writer, restricted, train_baseline
from models.benchmarks import few_shot as fs
from models.benchmarks.consistency import consistency_table
from models.benchmarks.episodes import sample_episodes, variants
from models.benchmarks.results import benchmark_dir, cost_rows, protocol, save_facts, slug, stacked, write_results
from models.config import Settings
from models.dataset import read_manifest
from models.editing import Edit
from tasks.benchmark import judge_images, score_episodes
from tasks.caching import Outputs
from tasks.data import DataVersion
from tasks.tracking import git_commit, record_run


@flow(name="genie-benchmark-few-shot")
@one_writer
def genie_benchmark_few_shot(settings: Settings) -> dict:
    """N-way K-shot episodes on the novel classes, every method with the same extra images per class, once per
    generator seed (each with its own generator, extractor and judge)."""
    started = time.monotonic()
    cfg, seeds = settings.benchmark.few_shot, settings.benchmark.generator_seeds
    step_log: StepLog = {}
    out = benchmark_dir(settings) / "few-shot"
    runs = over_generator_seeds(settings, step_log, one_replicate)
    first, plan = runs[0], runs[0]["plan"]
    tables = stacked(runs, ("episodes", "ada_choices", "judged", "cost"))
    table = fs.summarise_episodes(tables["episodes"], plan)
    ratios = settings.genie.ada_ratios
    facts = protocol(  # the generator named first is seed 0's; `generators` names each seed's
        first["settings"], started, git_commit(), benchmark="few-shot", ways=cfg.ways, shots=list(cfg.shots),
        episodes=cfg.episodes, queries=cfg.queries, episode_seed=cfg.seed, generator_seeds=list(seeds),
        base_classes=first["base"], novel_classes=first["novel"], variants=[v.label for v in plan],
        generators={seed: r["generator"] for seed, r in zip(seeds, runs)},
        extractor_val_accuracy={seed: r["extractor_val_accuracy"] for seed, r in zip(seeds, runs)},
        judge_val_accuracy={seed: r["judge_val_accuracy"] for seed, r in zip(seeds, runs)}, step_log=step_log,
        grids=fs.ada_grids(first["ada_choices"], first["made"], ratios, settings.generator.seed),
        failures=fs.failure_cases(tables["judged"], settings.generator.seed),
    )
    files = write_results(out, {"table": table, **tables, "consistency": consistency_table(tables["judged"])}, facts)
    run_id = record_run(settings.dataset.name, first["data"], "benchmark-few-shot",
                        params={f"few_shot.{k}": v for k, v in cfg.model_dump(mode="json").items()}
                        | {"generator_seeds": list(seeds)},
                        metrics={f"few_shot.{row.shots}shot.{slug(row.variant)}": row.mean for row in table.itertuples()},
                        artifacts=files, tags={"benchmark": "few-shot"})
    save_facts(out, facts | {"run_id": run_id})
    get_run_logger().info("few-shot benchmark in %.0f s -> %s", time.monotonic() - started, out)
    return {"run_id": run_id, "out_dir": out.as_posix(), "step_log": step_log, "table": table.to_dict("records")}


def one_replicate(settings: Settings, seed: int, data: DataVersion, split: Outputs, log: StepLog) -> dict:
    """One generator seed's episodes: its base-class extractor, its judge, its edits."""
    cfg, genie, edit_seed = settings.benchmark.few_shot, settings.genie, settings.generator.seed
    base, novel = fs.base_and_novel(split.info["classes"], cfg.base_classes, cfg.novel_classes)
    out = settings.workdir / "few-shot"
    judge = train_baseline(settings, data, split, log)  # real images of every class: the label judge
    base_split = restricted(split, base, log, out / "base-split")
    extractor = train_baseline(settings, data, base_split, log, label="train-extractor", view=out / "extractor")

    support, queries = fs.pools(read_manifest(split["manifest"]), Path(settings.dataset.path), novel)
    episodes = [e for shots in cfg.shots
                for e in sample_episodes(support, queries, cfg.ways, shots, cfg.queries, cfg.episodes, cfg.seed)]
    plan = variants(cfg.methods, genie, sweep=True)
    edits_of = fs.planned_edits(plan, episodes, genie.ada_ratios, edit_seed)
    made: dict[Edit, str] = {}
    for method, edits in fs.by_method(edits_of).items():
        got, _ = generate_edits(settings, data, split, edits, settings.workdir / "generated" / method, log,
                                f"generate-{method}", shard_size=settings.benchmark.shard_size)
        made |= got
    scores, choices = score_episodes(extractor, settings.classifier, episodes, plan, made, genie.ada_ratios, edit_seed)
    cost = cost_rows(made, edits_of)
    if any(v.method == "genie-ada" for v in plan):
        cost = fs.with_ada_cost(cost, choices, genie.ada_ratios)
    return {"plan": plan, "base": base, "novel": novel, "made": made, "episodes": scores.assign(seed=seed),
            "ada_choices": choices.assign(seed=seed), "cost": cost.assign(seed=seed),
            "judged": judge_images(judge, fs.generated_images(made, edits_of, choices)).assign(seed=seed),
            "extractor_val_accuracy": extractor.info["best_val_accuracy"],
            "judge_val_accuracy": judge.info["best_val_accuracy"]}
