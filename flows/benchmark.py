"""`genie benchmark few-shot` and `genie benchmark long-tail`: GeNIe against the simpler
alternatives with equal budgets, and the analyses reviewers ask for. Each writes its tables
to artifacts/<dataset>/benchmark/<name>/ and an MLflow run; `genie report` renders them."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import flow, get_run_logger

from flows.steps import (
    Steps,
    ensure_generator,
    evaluate,
    generate_edits,
    prepare,
    select,
    selection_edits,
    train_baseline,
)
from models.config import Settings
from models.consistency import consistency_table, consistent
from models.dataset import read_manifest
from models.engine import model_identity, pick_device
from models.fewshot import Variant, episode_edits, mean_ci, sample_episodes, variants
from models.generation import MANIFEST, Edit, replicas
from tasks.benchmark import judge_images, restrict_split, score_episodes
from tasks.caching import digest, run_verified
from tasks.data import split_data
from tasks.tracking import configure, git_commit, record_run
from tasks.train import finetune_classifier, train_classifier


def benchmark_dir(settings: Settings) -> Path:
    return settings.workdir / "benchmark"


def base_and_novel(classes: list[str], base: tuple | None, novel: tuple | None) -> tuple[list[str], list[str]]:
    base = list(base) if base else classes[: len(classes) // 2]
    novel = list(novel) if novel else [c for c in classes if c not in base]
    unknown = sorted(set(base + novel) - set(classes))
    if unknown:
        raise ValueError(f"benchmark.few_shot: unknown class {unknown[0]!r} (classes: {', '.join(classes)})")
    if set(base) & set(novel):
        raise ValueError(f"benchmark.few_shot: class {sorted(set(base) & set(novel))[0]!r} is both base and novel")
    return base, novel


def slug(text: str) -> str:
    """A variant label as an MLflow metric name / folder name: 'genie r=0.5' -> 'genie_r0.5'."""
    return re.sub(r"[^\w.-]+", "_", text.replace("=", ""))


def protocol(settings: Settings, started: float, **facts) -> dict:
    g = settings.generator
    device, dtype = pick_device(g.device, g.dtype)
    return {"dataset": settings.dataset.name, "generator": settings.generator_model,
            "generator_digest": model_identity(settings.generator_model), "sampler_steps": g.steps,
            "guidance": g.guidance, "prompt": g.prompt, "generation_seed": g.seed, "classifier": settings.classifier.model,
            "ada_ratios": list(settings.genie.ada_ratios), "git_commit": git_commit(),
            "device": f"{device.type} {str(dtype).removeprefix('torch.')}",
            "date": time.strftime("%Y-%m-%d %H:%M"), "seconds": round(time.monotonic() - started, 1), **facts}


def write_results(out: Path, tables: dict[str, pd.DataFrame], facts: dict) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, table in tables.items():
        table.to_csv(out / f"{name}.csv", index=False)
        files.append(out / f"{name}.csv")
    return [*files, save_facts(out, facts)]


def save_facts(out: Path, facts: dict) -> Path:
    """results.json: written before the MLflow run (as its artifact) and again with the run id."""
    (out / "results.json").write_text(json.dumps(facts, indent=2, default=str) + "\n")
    return out / "results.json"


def cost_rows(made: dict[Edit, str], edits_of: dict[str, list[Edit]]) -> pd.DataFrame:
    """UNet evaluations and seconds per kept image, per variant, from the generators' manifests."""
    manifests = {}
    rows = []
    for label, edits in edits_of.items():
        files = [Path(made[e]) for e in dict.fromkeys(edits) if e in made]
        if not files:
            continue
        folder = files[0].parent
        if folder not in manifests:
            manifests[folder] = pd.read_csv(folder / MANIFEST).drop_duplicates("file").set_index("file")
        kept = manifests[folder].reindex([f.name for f in files])
        rows.append({"variant": label, "images": len(files), "unet_evals_per_image": kept["unet_evals"].mean(),
                     "seconds_per_image": kept["seconds"].mean() if "seconds" in kept else np.nan})
    return pd.DataFrame(rows)


@flow(name="genie-benchmark-few-shot")
def genie_benchmark_few_shot(settings: Settings) -> dict:
    """N-way K-shot episodes on the novel classes, every method with the same extra images per class."""
    started = time.monotonic()
    configure()
    logger = get_run_logger()
    cfg, genie, seed = settings.benchmark.few_shot, settings.genie, settings.generator.seed
    steps: Steps = {}
    data, split = prepare(settings, steps)
    base, novel = base_and_novel(split.info["classes"], cfg.base_classes, cfg.novel_classes)
    out = benchmark_dir(settings) / "few-shot"
    ensure_generator(settings, data, split, steps)
    judge = train_baseline(settings, data, split, steps)  # real images of every class: the label judge
    base_split = run_verified(restrict_split, steps, split=split, classes=base, out_dir=out / "base-split")
    extractor = run_verified(train_classifier, steps, "train-extractor", cfg=settings.classifier,
                             dataset_root=settings.dataset.path, dataset_md5=data.md5, split=base_split,
                             image_size=settings.dataset.image_size, out_dir=out / "extractor")

    manifest, root = read_manifest(split["manifest"]), Path(settings.dataset.path)

    def pool(splits: list[str]) -> dict[str, list[str]]:
        rows = manifest[manifest["split"].isin(splits)]
        return {c: [str(root / p) for p in rows.loc[rows["label"] == c, "path"]] for c in novel}

    episodes = [e for shots in cfg.shots for e in sample_episodes(
        pool(["train"]), pool(["val", "test"]), cfg.ways, shots, cfg.queries, cfg.episodes, cfg.seed)]
    plan = variants(cfg.methods, genie.ada_ratios, genie.img2img_ratios)
    # genie-ada's candidates are genie's edits at the Ada ratios: the same pair and seed give the same image
    sweep = [v for v in plan if v.method != "genie-ada"]
    if "genie-ada" in cfg.methods:
        sweep += [Variant("genie", r) for r in genie.ada_ratios]
    edits_of = {v.label: [edit for e in episodes for edit in episode_edits(e, v, seed)] for v in dict.fromkeys(sweep)}
    edits_of = {label: edits for label, edits in edits_of.items() if edits}  # none and traditional generate nothing
    by_method: dict[str, dict[Edit, None]] = {}
    for edit in (e for edits in edits_of.values() for e in edits):
        by_method.setdefault(edit.method, {})[edit] = None
    made: dict[Edit, str] = {}
    for method, edits in by_method.items():
        got, _ = generate_edits(settings, data, split, list(edits), benchmark_dir(settings) / "generated" / method,
                                steps, f"generate-{method}", shard_size=settings.benchmark.shard_size)
        made |= got
    scores, choices = score_episodes(extractor, settings.classifier, episodes, plan, made, genie.ada_ratios, seed)

    table = summarise_episodes(scores, plan)
    images = generated_images(made, edits_of, choices)
    judged = judge_images(judge, images)
    consistency = consistency_table(judged) if len(judged) else pd.DataFrame()
    cost = cost_rows(made, edits_of)
    if "genie-ada" in cfg.methods and len(cost):
        sweep_cost = cost[cost["variant"].isin([Variant("genie", r).label for r in genie.ada_ratios])]
        cost = pd.concat([cost, pd.DataFrame([{  # every candidate in full, then one choice
            "variant": "genie-ada", "images": len(choices.drop_duplicates(["source", "target"])) if len(choices) else 0,
            "unet_evals_per_image": sweep_cost["unet_evals_per_image"].sum(),
            "seconds_per_image": sweep_cost["seconds_per_image"].sum()}])], ignore_index=True)
    facts = protocol(
        settings, started, benchmark="few-shot", ways=cfg.ways, shots=list(cfg.shots), episodes=cfg.episodes,
        queries=cfg.queries, episode_seed=cfg.seed, base_classes=base, novel_classes=novel,
        extractor_val_accuracy=extractor.info["best_val_accuracy"], judge_val_accuracy=judge.info["best_val_accuracy"],
        variants=[v.label for v in plan], steps=steps,
        grids=ada_grids(choices, made, genie.ada_ratios, seed), failures=failure_cases(judged, settings.generator.seed),
    )
    files = write_results(out, {"table": table, "episodes": scores, "ada_choices": choices, "judged": judged,
                                "consistency": consistency, "cost": cost}, facts)
    run_id = record_run(settings, data, "benchmark-few-shot",
                        params={f"few_shot.{k}": v for k, v in cfg.model_dump(mode="json").items()},
                        metrics={f"few_shot.{row.shots}shot.{slug(row.variant)}": row.mean for row in table.itertuples()},
                        artifacts=files, tags={"benchmark": "few-shot"})
    save_facts(out, facts | {"run_id": run_id})
    logger.info("few-shot benchmark in %.0f s -> %s", time.monotonic() - started, out)
    return {"run_id": run_id, "out_dir": out.as_posix(), "steps": steps, "table": table.to_dict("records")}


def summarise_episodes(scores: pd.DataFrame, plan: list[Variant]) -> pd.DataFrame:
    rows = []
    for (shots, label), group in scores.groupby(["shots", "variant"], sort=False):
        mean, ci = mean_ci(group["accuracy"])
        rows.append({"shots": shots, "variant": label, "mean": mean, "ci95": ci, "episodes": len(group),
                     "extra_images_per_episode": group["extra_images"].mean()})
    order = {v.label: i for i, v in enumerate(plan)}
    return pd.DataFrame(rows).sort_values(["shots", "variant"], key=lambda c: c.map(order) if c.name == "variant"
                                          else c).reset_index(drop=True)


def generated_images(made: dict[Edit, str], edits_of: dict[str, list[Edit]], choices: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct generated image a variant uses (Ada: its chosen candidates)."""
    rows = [{"variant": label, "image": made[e], "label": e.label, "source_class": e.source_class,
             "source": e.source, "ratio": e.ratio}
            for label, edits in edits_of.items() for e in dict.fromkeys(edits) if e in made]
    if len(choices):
        picked = choices.drop_duplicates("image")
        rows += [{"variant": "genie-ada", "image": r.image, "label": r.target, "source_class": r.source_class,
                  "source": r.source, "ratio": r.ratio} for r in picked.itertuples()]
    return pd.DataFrame(rows, columns=["variant", "image", "label", "source_class", "source", "ratio"])


def ada_grids(choices: pd.DataFrame, made: dict[Edit, str], ratios: tuple[float, ...], seed: int,
              pairs: int = 10) -> list[dict]:
    """Source -> candidates across r -> Ada's choice, for one source per (source class, target) pair."""
    if choices.empty:
        return []
    grids = []
    for row in choices.drop_duplicates(["source_class", "target"]).head(pairs).itertuples():
        candidates = [made[Edit.make(row.source, row.source_class, row.target, "genie", r, seed)] for r in ratios]
        grids.append({"source": row.source, "source_class": row.source_class, "target": row.target,
                      "candidates": list(zip(ratios, candidates)), "chosen": row.ratio, "jumps": row.jumps})
    return grids


def failure_cases(judged: pd.DataFrame, seed: int, count: int = 24) -> list[dict]:
    """GeNIe edits the real-data judge sees as the source class or as neither class."""
    if judged.empty:
        return []
    failed = judged[judged["variant"].str.startswith("genie") & (judged["outcome"] != "as label")]
    failed = failed.drop_duplicates("image").sample(min(count, len(failed)), random_state=seed) if len(failed) else failed
    return failed[["image", "source", "source_class", "label", "variant", "judged", "outcome"]].to_dict("records")


def long_tail_settings(settings: Settings, seed: int) -> Settings:
    """The same project with a long-tailed train split, its own seed and its own artifact folder."""
    cfg = settings.benchmark.long_tail
    data = settings.model_dump()
    data["dataset"]["long_tail"] = {"imbalance_ratio": cfg.imbalance_ratio, "seed": seed}
    data["classifier"]["seed"] = seed
    data["generator"]["model"] = settings.generator_model
    data["select"] |= {"targets": "tail", "per_target": cfg.per_target}
    data["paths"]["artifacts"] = benchmark_dir(settings) / "long-tail" / f"seed-{seed}"
    return Settings.model_validate(data)


def long_tail_edits(settings: Settings, variant: Variant, selection, manifest: pd.DataFrame) -> list[Edit]:
    """Equal budgets: as many images per tail class as its confusion-driven selection has sources.
    GeNIe / Txt2Img follow the selection; Img2Img edits the class's own train images instead."""
    if variant.method == "real":
        return []
    method = variant.method.removesuffix("+filter")
    if method != "img2img":
        return selection_edits(settings.model_copy(update={"select": settings.select.model_copy(
            update={"method": method})}), selection)
    chosen = pd.read_csv(selection["selection"], dtype=str)
    train = manifest[manifest["split"] == "train"]
    root = Path(settings.dataset.path)
    return [edit for target, n in chosen.groupby("target").size().items()
            for edit in replicas([str(root / p) for p in train.loc[train["label"] == target, "path"]], target, n,
                                 "img2img", variant.ratio, settings.generator.seed)]


@flow(name="genie-benchmark-long-tail")
def genie_benchmark_long_tail(settings: Settings) -> dict:
    """Fine-tuning on a long-tailed train split: real only vs confusion-driven GeNIe / GeNIe-Ada vs
    Txt2Img / Img2Img with the same budget, over several seeds; accuracy overall and per group."""
    started = time.monotonic()
    configure()
    cfg = settings.benchmark.long_tail
    steps: Steps = {}
    data, split = prepare(settings, steps)
    ensure_generator(settings, data, split, steps)
    out = benchmark_dir(settings) / "long-tail"
    plan = variants(cfg.methods, (settings.genie.noise_ratio,), settings.genie.img2img_ratios)
    rows, judged, costs = [], [], []
    for seed in cfg.seeds:
        lt = long_tail_settings(settings, seed)
        tag = f"seed-{seed}"
        lt_split = run_verified(split_data, steps, f"{tag}-split", cfg=lt.dataset, dataset_md5=data.md5,
                                out_dir=lt.workdir / "split")
        manifest = read_manifest(lt_split["manifest"])
        seed_steps: Steps = {}
        baseline = train_baseline(lt, data, lt_split, seed_steps)
        val = evaluate(lt, baseline, lt_split, seed_steps, "evaluate-baseline-val", lt.workdir / "baseline" / "val", "val")
        test = evaluate(lt, baseline, lt_split, seed_steps, "evaluate-baseline", lt.workdir / "baseline" / "test")
        rows.append(result_row(seed, "baseline (no fine-tuning)", test, 0))
        selection = select(lt, val, lt_split, seed_steps)
        for variant in plan:
            edits = long_tail_edits(lt, variant, selection, manifest)
            method = variant.method.removesuffix("+filter")
            made = {}
            if edits:  # Ada's choice follows this seed's baseline, which its image key does not name: own folder
                made, _ = generate_edits(
                    lt, data, lt_split, edits, lt.workdir / "generated" / method if method == "genie-ada"
                    else benchmark_dir(settings) / "generated" / method, seed_steps, f"generate-{slug(variant.label)}",
                    classifier=baseline if method == "genie-ada" else None, shard_size=settings.benchmark.shard_size)
            images = pd.DataFrame([{"variant": variant.label, "seed": seed, "image": path, "label": e.label,
                                    "source_class": e.source_class, "source": e.source, "ratio": e.ratio}
                                   for e, path in made.items()], columns=["variant", "seed", "image", "label",
                                                                          "source_class", "source", "ratio"])
            verdicts = judge_images(baseline, images)  # the judge: this seed's classifier on real images only
            if variant.method.endswith("+filter") and len(verdicts):
                verdicts = verdicts[consistent(verdicts["p_label"], settings.benchmark.filter_threshold)]
            judged.append(verdicts)
            if not variant.method.endswith("+filter"):
                costs.append(cost_rows(made, {variant.label: edits}).assign(seed=seed))
            generated = [(r.image, r.label, r.source_class) for r in verdicts.itertuples()]
            tuned = run_verified(
                finetune_classifier, seed_steps, f"finetune-{slug(variant.label)}", cfg=lt.classifier,
                finetune=lt.finetune, dataset_root=lt.dataset.path, dataset_md5=data.md5, split=lt_split,
                image_size=lt.dataset.image_size, base=baseline, generated=generated,
                generated_md5=digest(sorted(generated)), out_dir=lt.workdir / "finetuned" / slug(variant.label))
            result = evaluate(lt, tuned, lt_split, seed_steps, f"evaluate-{slug(variant.label)}",
                              lt.workdir / "finetuned" / slug(variant.label) / "test")
            rows.append(result_row(seed, variant.label, result, len(generated)))
        steps |= {f"{tag}-{k}": v for k, v in seed_steps.items()}

    per_seed = pd.DataFrame(rows)
    table = summarise_seeds(per_seed)
    judged_all = pd.concat(judged, ignore_index=True) if judged else pd.DataFrame()
    consistency = consistency_table(judged_all) if len(judged_all) else pd.DataFrame()
    cost = pd.concat(costs, ignore_index=True) if costs else pd.DataFrame()
    e = settings.evaluate
    groups = f"many: > {e.many_shot} train images, medium: {e.few_shot}-{e.many_shot}, few: < {e.few_shot}"
    facts = protocol(settings, started, benchmark="long-tail", imbalance_ratio=cfg.imbalance_ratio, seeds=list(cfg.seeds),
                     per_target=cfg.per_target, k_confused=settings.select.k_confused,
                     filter_threshold=settings.benchmark.filter_threshold, finetune=settings.finetune.model_dump(),
                     groups=groups, variants=["baseline (no fine-tuning)", *(v.label for v in plan)], steps=steps)
    files = write_results(out, {"table": table, "per_seed": per_seed, "judged": judged_all, "consistency": consistency,
                                "cost": cost}, facts)
    run_id = record_run(settings, data, "benchmark-long-tail",
                        params={f"long_tail.{k}": v for k, v in cfg.model_dump(mode="json").items()},
                        metrics={f"long_tail.{slug(r['variant'])}.{m}": r[f"{m}.mean"] for r in table.to_dict("records")
                                 for m in ("accuracy", "accuracy.few") if pd.notna(r[f"{m}.mean"])},
                        artifacts=files, tags={"benchmark": "long-tail"})
    save_facts(out, facts | {"run_id": run_id})
    get_run_logger().info("long-tail benchmark in %.0f s -> %s", time.monotonic() - started, out)
    return {"run_id": run_id, "out_dir": out.as_posix(), "steps": steps, "table": table.to_dict("records")}


def result_row(seed: int, label: str, evaluation, generated: int) -> dict:
    metrics = evaluation.info["metrics"]
    return {"seed": seed, "variant": label, "generated_images": generated,
            **{k: metrics.get(k, np.nan) for k in ("accuracy", "accuracy.many", "accuracy.medium", "accuracy.few")}}


def summarise_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, per variant, in the order they ran."""
    metrics = ["accuracy", "accuracy.many", "accuracy.medium", "accuracy.few", "generated_images"]
    grouped = per_seed.groupby("variant", sort=False)[metrics]
    table = grouped.mean().add_suffix(".mean").join(grouped.std(ddof=0).add_suffix(".std"))
    return table.assign(seeds=grouped.size()).reset_index()
