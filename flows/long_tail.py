"""`genie benchmark long-tail`: fine-tuning on a long-tailed train split, real only vs confusion-driven
GeNIe / GeNIe-Ada vs Txt2Img / Img2Img with equal budgets, over several generator seeds. Writes
artifacts/<dataset>/benchmark/long-tail/ and an MLflow run."""
from __future__ import annotations

import functools
import time

import pandas as pd
from prefect import flow, get_run_logger

from flows.replicates import long_tail_settings, over_generator_seeds
from flows.stages import StepLog, evaluate, finetune, generate_edits, one_writer, select, split_of, train_baseline
from models import methods
from models.benchmarks.consistency import consistency_table
from models.benchmarks.context import context_grids, context_kept, context_reader, context_table, said_verdicts, summary
from models.benchmarks.episodes import Variant, variants
from models.benchmarks.long_tail import (
    BASELINE,
    kept_images,
    long_tail_edits,
    prediction_rows,
    result_row,
    summarise_seeds,
    variant_images,
)
from models.benchmarks.results import benchmark_dir, cost_rows, protocol, save_facts, slug, stacked, write_results
from models.config import Settings
from models.dataset import read_manifest
from tasks.benchmark import judge_images
from tasks.caching import Outputs
from tasks.data import DataVersion
from tasks.keys import images_digest
from tasks.tracking import git_commit, record_run


@flow(name="genie-benchmark-long-tail")
@one_writer
def genie_benchmark_long_tail(settings: Settings) -> dict:
    """Every variant fine-tunes each replicate's long-tailed baseline; accuracy overall and per group. A
    replicate (generator seed) draws its own subsample and trains its own generator and classifiers."""
    started = time.monotonic()
    cfg, seeds = settings.benchmark.long_tail, settings.benchmark.generator_seeds
    step_log: StepLog = {}
    out = benchmark_dir(settings) / "long-tail"
    plan = variants(cfg.methods, settings.genie, sweep=cfg.sweep)
    runs = over_generator_seeds(settings, step_log, functools.partial(one_replicate, plan=plan))
    tables = stacked(runs, ("per_seed", "predictions", "judged", "cost"))
    grids = runs[0]["grids"]
    table = summarise_seeds(tables["per_seed"], tables["predictions"])
    e = settings.evaluate
    facts = protocol(runs[0]["settings"], started, git_commit(), benchmark="long-tail",
                     imbalance_ratio=cfg.imbalance_ratio, seeds=list(seeds), per_target=cfg.per_target,
                     k_confused=settings.select.k_confused, filter_threshold=settings.benchmark.filter_threshold,
                     finetune=settings.finetune.model_dump(), generators={s: r["generator"] for s, r in zip(seeds, runs)},
                     groups=f"many: > {e.many_shot} train images, medium: {e.few_shot}-{e.many_shot}, "
                            f"few: < {e.few_shot}",
                     variants=[BASELINE, *(v.label for v in plan)], context_grids=grids, step_log=step_log)
    context = context_table(tables["judged"])
    files = write_results(out, {"table": table, **tables, "consistency": consistency_table(tables["judged"]),
                                "context": context}, facts)
    run_id = record_run(settings.dataset.name, runs[0]["data"], "benchmark-long-tail",
                        params={f"long_tail.{k}": v for k, v in cfg.model_dump(mode="json").items()}
                        | {"generator_seeds": list(seeds)},
                        metrics={f"long_tail.{slug(r['variant'])}.{m}": r[f"{m}.mean"] for r in table.to_dict("records")
                                 for m in ("accuracy", "accuracy.few", "accuracy.worst_group")
                                 if pd.notna(r[f"{m}.mean"])},
                        artifacts=files, tags={"benchmark": "long-tail"})
    save_facts(out, facts | {"run_id": run_id})
    get_run_logger().info("long-tail benchmark in %.0f s -> %s", time.monotonic() - started, out)
    return {"run_id": run_id, "out_dir": out.as_posix(), "step_log": step_log, "table": table.to_dict("records"),
            "summary": summary(table, context),
            "verdicts": said_verdicts(table, tables["predictions"], settings.genie.noise_ratio)}


def one_replicate(settings: Settings, seed: int, data: DataVersion, split: Outputs, log: StepLog,
                  plan: list[Variant]) -> dict:
    """One generator seed: its long-tailed subsample and baseline, then every variant fine-tuned from it."""
    lt = long_tail_settings(settings, seed)
    lt_split = split_of(lt, data, log, "long-tail-split")
    manifest = read_manifest(lt_split["manifest"])
    baseline = train_baseline(lt, data, lt_split, log)
    val = evaluate(lt, baseline, lt_split, log, "evaluate-baseline-val", lt.workdir / "baseline" / "val", "val")
    test = evaluate(lt, baseline, lt_split, log, "evaluate-baseline", lt.workdir / "baseline" / "test")
    contexts = dict(zip(manifest["path"], manifest["context"])) if "context" in manifest else {}
    reader = context_reader(manifest, lt.dataset.path) if contexts else None
    rows = [result_row(seed, BASELINE, test.info["metrics"], 0)]
    predictions = [prediction_rows(seed, BASELINE, test, contexts)]
    judged, costs = [], []
    selection = pd.read_csv(select(lt, val, lt_split, log)["selection"], dtype=str)
    for variant in plan:
        edits = long_tail_edits(lt, variant, selection, manifest)
        method, name = variant.method, slug(variant.label)
        made = {}
        if edits:  # Ada's choice follows this seed's baseline, which its image key does not name: own folder
            ada = methods.get(method).needs_extractor
            folder = lt.workdir if ada else settings.workdir
            made, _ = generate_edits(lt, data, lt_split, edits, folder / "generated" / method, log,
                                     f"generate-{name}", extractor=baseline if ada else None,
                                     shard_size=settings.benchmark.shard_size)
        # the judge: this seed's classifier of real images only
        verdicts = kept_images(judge_images(baseline, variant_images(made, variant, edits, seed)), variant,
                               settings.benchmark.filter_threshold)
        if reader:
            verdicts = context_kept(verdicts, reader, manifest, lt.dataset.path)
        judged.append(verdicts)
        if not variant.filter:
            costs.append(cost_rows(made, {variant.label: edits}).assign(seed=seed))
        generated = [(r.image, r.label, r.source_class) for r in verdicts.itertuples()]
        tuned = finetune(lt, data, lt_split, baseline, generated, images_digest(generated), log,
                         label=f"finetune-{name}", view=lt.workdir / "finetuned" / name)
        result = evaluate(lt, tuned, lt_split, log, f"evaluate-{name}", lt.workdir / "finetuned" / name / "test")
        rows.append(result_row(seed, variant.label, result.info["metrics"], len(generated)))
        predictions.append(prediction_rows(seed, variant.label, result, contexts))
    judged = pd.concat([j for j in judged if not j.empty] or judged, ignore_index=True)
    return {"per_seed": pd.DataFrame(rows), "predictions": pd.concat(predictions, ignore_index=True), "judged": judged,
            "grids": context_grids(judged, settings.genie.noise_ratio) if reader else [],
            "cost": pd.concat(costs, ignore_index=True) if costs else pd.DataFrame()}
