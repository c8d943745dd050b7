"""`genie benchmark adapt`: one class held out of the embedded generator, then taught back to it by each adapter
kind; the time against training the generator, and the quality judge's figures. Writes
artifacts/<dataset>/benchmark/adapt/ and an MLflow run."""
from __future__ import annotations

import time

import pandas as pd
from prefect import flow, get_run_logger

from flows.stages import StepLog, adapt_one, one_writer, prepare, train_baseline, train_generator
from models.benchmarks import adapt
from models.benchmarks.results import benchmark_dir, protocol, save_facts, write_results
from models.classifier import classify
from models.config import Settings
from models.dataset import read_manifest, subset
from models.digests import model_identity
from models.editing import EditRunner
from tasks.caching import Outputs
from tasks.editing import adapted_prompts, make_engine
from tasks.tracking import git_commit, record_run


def without(split: Outputs, held: str, folder) -> Outputs:
    """The split with the held-out class left out (its rows and its name): what the base generator learns from."""
    manifest = read_manifest(split["manifest"])
    folder.mkdir(parents=True, exist_ok=True)
    manifest[manifest["label"] != held].to_csv(folder / "split.csv", index=False)
    info = split.info | {"classes": [c for c in split.info["classes"] if c != held], "held_out": held}
    return Outputs.of(info, manifest=folder / "split.csv")


@flow(name="genie-benchmark-adapt")
@one_writer
def genie_benchmark_adapt(settings: Settings) -> dict:
    """The base generator trained without benchmark.adapt.held_out; then, for no adapter and each adapter kind:
    seconds to adapt, and the share of text-to-image samples and of GeNIe edits (towards it, and towards the
    other classes) that a classifier of real images names as prompted."""
    started = time.monotonic()
    cfg, g = settings.benchmark.adapt, settings.generator
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    classes, held = split.info["classes"], cfg.held_out
    if held not in classes:
        raise ValueError(f"benchmark.adapt.held_out: class {held!r} is not in the data ({', '.join(classes)})")
    out = benchmark_dir(settings) / "adapt"
    base = train_generator(settings, data, without(split, held, out / "split"), step_log, out / "base", "train-base")
    base_model = (out / "base").as_posix()
    judge = train_baseline(settings, data, split, step_log)  # real images only, every class: `genie quality`'s judge
    manifest = read_manifest(split["manifest"])
    images, _ = subset(manifest[manifest["label"] == held], settings.dataset.path, "train", [held])
    made = adapt.edits(manifest, settings.dataset.path, classes, held, cfg.samples, cfg.pairs, cfg.ratio, g.seed)
    rows = []
    for kind in ("none", *cfg.kinds):
        seconds, folders = 0.0, ()
        if kind != "none":
            adapter = adapt_one(settings, step_log, f"adapt-{kind}", kind, base_model, model_identity(base_model),
                                held, images, out / kind)
            seconds, folders = adapter.info["train_seconds"], (((out / kind).as_posix(), ""),)
        engine = make_engine(g, base_model, folders)
        prompts = adapted_prompts(engine, g.prompt, settings.prompts(classes))
        runner = EditRunner(engine, out / "generated" / kind, prompts.__getitem__, g.batch_size)
        judged = adapt.figures(runner, made, lambda paths: _names(judge["checkpoint"], paths), held)
        rows.append({"adapter": kind, "seconds": seconds, "of_retrain": seconds / base.info["train_seconds"],
                     "prompt": prompts[held], **judged})
    table = pd.DataFrame(rows)
    facts = protocol(settings, started, git_commit(), benchmark="adapt", held_out=held, samples=cfg.samples,
                     pairs=cfg.pairs, ratio=cfg.ratio, retrain_seconds=base.info["train_seconds"],
                     judge_val_accuracy=judge.info["best_val_accuracy"], step_log=step_log,
                     adapter=g.adapter.model_dump(mode="json"))
    files = write_results(out, {"table": table}, facts)
    metrics = {f"{r['adapter']}.{k}": v for r in rows for k, v in r.items() if k not in ("adapter", "prompt")}
    run_id = record_run(settings.dataset.name, data, "benchmark-adapt", params={"adapt.held_out": held, "adapt.samples": cfg.samples,
                        "adapt.pairs": cfg.pairs}, metrics=metrics, artifacts=files, tags={"benchmark": "adapt"})
    save_facts(out, facts | {"run_id": run_id})
    get_run_logger().info("adapt benchmark in %.0f s -> %s", time.monotonic() - started, out)
    return {"run_id": run_id, "out_dir": out.as_posix(), "step_log": step_log, "table": table.to_dict("records"),
            "retrain_seconds": base.info["train_seconds"]}


def _names(checkpoint, paths) -> list[str]:
    probabilities, names = classify(checkpoint, paths)
    return [names[i] for i in probabilities.argmax(1)]
