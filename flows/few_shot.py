"""`genie benchmark few-shot`: N-way K-shot episodes on the novel classes, every method with the
same extra images per class. Writes artifacts/<dataset>/benchmark/few-shot/ and an MLflow run."""
from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, get_run_logger

from flows.stages import StepLog, ensure_generator, generate_edits, one_writer, prepare, train_baseline
from models.benchmarks import few_shot as fs
from models.benchmarks.consistency import consistency_table
from models.benchmarks.episodes import sample_episodes, variants
from models.benchmarks.results import benchmark_dir, cost_rows, protocol, save_facts, slug, write_results
from models.config import Settings
from models.dataset import read_manifest
from models.editing import Edit
from tasks.benchmark import judge_images, restrict_split, score_episodes
from tasks.caching import run_verified
from tasks.tracking import configure, git_commit, record_run
from tasks.train import train_classifier


@flow(name="genie-benchmark-few-shot")
@one_writer
def genie_benchmark_few_shot(settings: Settings) -> dict:
    """N-way K-shot episodes on the novel classes, every method with the same extra images per class."""
    started = time.monotonic()
    configure()
    settings = fs.whole_train_split(settings)
    cfg, genie, seed = settings.benchmark.few_shot, settings.genie, settings.generator.seed
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    base, novel = fs.base_and_novel(split.info["classes"], cfg.base_classes, cfg.novel_classes)
    out = benchmark_dir(settings) / "few-shot"
    ensure_generator(settings, data, split, step_log)
    judge = train_baseline(settings, data, split, step_log)  # real images of every class: the label judge
    base_split = run_verified(restrict_split, step_log, split=split, classes=base, view=out / "base-split")
    extractor = run_verified(train_classifier, step_log, "train-extractor", cfg=settings.classifier,
                             dataset_root=settings.dataset.path, dataset_md5=data.md5, split=base_split,
                             image_size=settings.dataset.image_size, view=out / "extractor")

    support, queries = fs.pools(read_manifest(split["manifest"]), Path(settings.dataset.path), novel)
    episodes = [e for shots in cfg.shots
                for e in sample_episodes(support, queries, cfg.ways, shots, cfg.queries, cfg.episodes, cfg.seed)]
    plan = variants(cfg.methods, genie.ada_ratios, genie.img2img_ratios)
    edits_of = fs.planned_edits(plan, episodes, genie.ada_ratios, seed)
    made: dict[Edit, str] = {}
    for method, edits in fs.by_method(edits_of).items():
        got, _ = generate_edits(settings, data, split, edits, benchmark_dir(settings) / "generated" / method,
                                step_log, f"generate-{method}", shard_size=settings.benchmark.shard_size)
        made |= got
    scores, choices = score_episodes(extractor, settings.classifier, episodes, plan, made, genie.ada_ratios, seed)

    table = fs.summarise_episodes(scores, plan)
    judged = judge_images(judge, fs.generated_images(made, edits_of, choices))
    cost = cost_rows(made, edits_of)
    if any(m.startswith("genie-ada") for m in cfg.methods):
        cost = fs.with_ada_cost(cost, choices, genie.ada_ratios)
    facts = protocol(
        settings, started, git_commit(), benchmark="few-shot", ways=cfg.ways, shots=list(cfg.shots),
        episodes=cfg.episodes, queries=cfg.queries, episode_seed=cfg.seed, base_classes=base, novel_classes=novel,
        extractor_val_accuracy=extractor.info["best_val_accuracy"], judge_val_accuracy=judge.info["best_val_accuracy"],
        variants=[v.label for v in plan], step_log=step_log,
        grids=fs.ada_grids(choices, made, genie.ada_ratios, seed), failures=fs.failure_cases(judged, seed),
    )
    files = write_results(out, {"table": table, "episodes": scores, "ada_choices": choices, "judged": judged,
                                "consistency": consistency_table(judged), "cost": cost}, facts)
    run_id = record_run(settings, data, "benchmark-few-shot",
                        params={f"few_shot.{k}": v for k, v in cfg.model_dump(mode="json").items()},
                        metrics={f"few_shot.{row.shots}shot.{slug(row.variant)}": row.mean for row in table.itertuples()},
                        artifacts=files, tags={"benchmark": "few-shot"})
    save_facts(out, facts | {"run_id": run_id})
    get_run_logger().info("few-shot benchmark in %.0f s -> %s", time.monotonic() - started, out)
    return {"run_id": run_id, "out_dir": out.as_posix(), "step_log": step_log, "table": table.to_dict("records")}
