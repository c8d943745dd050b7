"""The pipeline's stages, shared by every flow (and so by the CLI and dvc.yaml): each one
calls a cached task and records whether it ran or came from the cache."""
from __future__ import annotations

import functools
import inspect
import json
import time
from pathlib import Path

import pandas as pd
from prefect import get_run_logger

from models import methods
from models.config import Settings
from models.dataset import generator_splits, read_manifest, subset
from models.determinism import pin_runtime
from models.digests import model_identity
from models.editing import Edit, edits_from_selection
from models.lifecycle import TrainedOn, recipe, retrain_reason
from models.locks import exclusive
from tasks.adapters import adapt_class, register_adapter
from tasks.caching import Outputs, run_verified, run_verified_all
from tasks.data import DataVersion, split_data, version_data
from tasks.editing import generate_shard, sync_manifest
from tasks.evaluate import evaluate_classifier
from tasks.generator import train_generator_model
from tasks.keys import images_digest
from tasks.registry import current_generator, register_generator, restore_generator
from tasks.selection import select_hard_negatives
from tasks.train import finetune_classifier, train_classifier

StepLog = dict[str, str]
ADAPTERS = "adapters"  # <workdir>/adapters/<class>: each class's adapter on the current generator


# A first night's minutes per stage on the embedded digits, measured on 2 CPU cores where benchmarks/epoch_speed.py
# read 70-74 images/s (docs/nightly_cost.md, night E); a stage that comes from the cache takes seconds.
FIRST_NIGHT_MINUTES = {"prepare": 0.7, "train-generator": 8, "baseline": 1.1, "select": 0.1, "generate": 0.9,
                       "finetune": 0.7, "evaluate": 0.2}

def one_writer(fn):
    """A flow that holds its dataset for its whole run (its work folder, and with GENIE_DATABASE_URL the dataset on
    every machine): a second one waits, saying who holds it, or with `wait=False` (a parameter of the flow, where it
    has one) stops at once naming the holder.
    Every flow passes here, so its process first takes the configured torch threads and kernels: what
    trains or generates in-process runs pinned, whether or not its task is handed the runtime."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        settings = bound["settings"]
        pin_runtime(settings.runtime)
        with exclusive(settings.workdir, settings.dataset.name, fn.__name__, bound.get("wait", True)):
            return fn(*args, **kwargs)

    return run


def prepare(settings: Settings, step_log: StepLog) -> tuple[DataVersion, Outputs]:
    data = version_data(settings.dataset)
    return data, split_of(settings, data, step_log)


def split_of(settings: Settings, data: DataVersion, step_log: StepLog, label: str = "split-data") -> Outputs:
    """The dataset's split manifest as settings.dataset draws it (a long tail, a benchmark's replicate)."""
    return run_verified(split_data, step_log, label, cfg=settings.dataset, dataset_md5=data.md5,
                        view=settings.workdir / "split")


def restricted(split: Outputs, classes: list[str], step_log: StepLog, view: Path) -> Outputs:
    """The split with only `classes` (a few-shot extractor's base classes)."""
    from tasks.benchmark import restrict_split  # the benchmarks' steps: imported by them only

    return run_verified(restrict_split, step_log, split=split, classes=classes, view=view)


def _step(task, refresh: bool):
    """The task, or with `refresh` the task made again whatever its cache holds."""
    return task.with_options(refresh_cache=True) if refresh else task


def train_baseline(settings: Settings, data: DataVersion, split: Outputs, step_log: StepLog,
                   refresh: bool = False, label: str = "train-classifier", view: Path | None = None,
                   seed_offset: int = 0) -> Outputs:
    """A classifier on the split's real train images (the night's baseline; with a `label` and `view` of its own, a
    benchmark's judge or extractor, whose classifier seed is offset by `seed_offset`)."""
    cfg = settings.classifier
    cfg = cfg.model_copy(update={"seed": cfg.seed + seed_offset}) if seed_offset else cfg
    return run_verified(_step(train_classifier, refresh), step_log, label, cfg=cfg,
                        dataset_root=settings.dataset.path, dataset_md5=data.md5, split=split,
                        image_size=settings.dataset.image_size, runtime=settings.runtime,
                        view=view or settings.workdir / "baseline")


def finetune(settings: Settings, data: DataVersion, split: Outputs, baseline: Outputs,
             generated: list[tuple[str, str, str]], generated_md5: str, step_log: StepLog,
             refresh: bool = False, label: str = "finetune-classifier", view: Path | None = None) -> Outputs:
    """The challenger: the baseline fine-tuned with the hard negatives beside the real images."""
    return run_verified(
        _step(finetune_classifier, refresh), step_log, label, cfg=settings.classifier,
        finetune=settings.finetune, dataset_root=settings.dataset.path, dataset_md5=data.md5, split=split,
        image_size=settings.dataset.image_size, base=baseline, generated=generated, generated_md5=generated_md5,
        runtime=settings.runtime, view=view or settings.workdir / "finetuned",
    )


def evaluate(settings: Settings, model: Outputs, split: Outputs, step_log: StepLog, label: str, out_dir: Path,
             on: str = "test") -> Outputs:
    return run_verified(evaluate_classifier, step_log, label, model=model, split=split,
                        dataset_root=settings.dataset.path, cfg=settings.evaluate, view=out_dir, on=on)


def ensure_generator(settings: Settings, data: DataVersion, split: Outputs, step_log: StepLog,
                     force: bool = False, replace: str | None = None) -> dict:
    """The generator a night uses: the registered `current` one unless the retrain policy (or `force`)
    says train; a configured generator.model is used as it is. Returns the decision and its reason.
    `replace`: the command, when it must not replace a registered generator unasked (it stops, saying why)."""
    if settings.generator.model:  # a checkpoint knows none of the data's classes as such: `new` adapts them all
        return {"decision": "configured", "reason": settings.generator.model,
                "adapted": adapt_classes(settings, data, split, step_log)}
    counts = split.info["counts"]
    images = sum(n for name in generator_splits(settings.dataset) for n in counts.get(name, {}).values())
    now = TrainedOn(tuple(split.info["classes"]), images, recipe(settings), time.time())
    current = current_generator(settings.registered_generator)
    adapt = settings.generator.adapt != "none"
    retrain, reason = retrain_reason(current and current.trained_on, now, settings.generator.retrain, force, adapt)
    folder = Path(settings.generator_model)
    if retrain and current and replace:  # no surprise: tens of minutes of training, and a new `current`
        raise ValueError(f"{replace} would train the embedded generator again ({reason}), about "
                         f"{FIRST_NIGHT_MINUTES['train-generator']:g} min on 2 CPU cores, and make it the current one: run it "
                         "with --retrain, or `genie train-generator` first")
    if not retrain:
        restore_generator(current.source, current.digest, folder)
        step_log["train-generator"] = "reused"
        adapted = adapt_classes(settings, data, split, step_log, current.trained_on.classes)
        return {"decision": "reused", "reason": reason, "version": current.version, "adapted": adapted}
    budget = settings.generator.embedded
    get_run_logger().info("train-generator (%s): the embedded generator's VAE for %d steps, then its UNet for %d, each "
                          "with a bar and its time left (unless the cache has them)", reason, budget.vae_steps,
                          budget.unet_steps)
    model = train_generator(settings, data, split, step_log, folder, refresh=force)
    version = register_generator(settings.registered_generator, settings.dataset.name, settings.generator.prompt, data,
                                 model, folder, now, reason)
    decision = "trained" if step_log["train-generator"] == "ran" else "cached"
    return {"decision": decision, "reason": reason, "version": version, **{k: model.info[k] for k in
            ("train_seconds", "vae_mse", "unet_loss")}, "adapted": adapt_classes(settings, data, split, step_log, now.classes)}


def adapt_classes(settings: Settings, data: DataVersion, split: Outputs, step_log: StepLog,
                  known: tuple[str, ...] = ()) -> list[str]:
    """The classes generator.adapter.classes names (`new`: those not in `known`, the classes the base generator
    learnt) taught to it (generator.adapt), each a cached task whose adapter lands in <workdir>/adapters/<class>.
    Each is registered (`<dataset>-adapters`). A class with too few train images keeps its plain prompt, said in one
    line. Returns the classes adapted."""
    g = settings.generator
    if g.adapt == "none":
        return []
    classes = split.info["classes"]
    chosen = g.adapter.classes
    wanted = classes if chosen == "all" else [c for c in classes if c not in known] if chosen == "new" else \
        [c for c in chosen if c in classes]
    manifest = read_manifest(split["manifest"])
    identity = model_identity(settings.generator_model)
    adapted = []
    for label in wanted:
        paths, _ = subset(manifest[manifest["label"] == label], settings.dataset.path,
                          generator_splits(settings.dataset), [label])
        if len(paths) < g.adapter.min_images:
            get_run_logger().warning("class %s: %d train images, fewer than generator.adapter.min_images (%d): no "
                                     "adapter, its plain prompt", label, len(paths), g.adapter.min_images)
            continue
        made = adapt_one(settings, step_log, f"adapt-{label}", g.adapt, settings.generator_model, identity, label,
                         paths, settings.workdir / ADAPTERS / label)
        register_adapter(settings.registered_adapters, settings.dataset.name, data, settings.workdir / ADAPTERS / label,
                         made.info)
        adapted.append(label)
    return adapted


def adapt_one(settings: Settings, step_log: StepLog, step: str, kind: str, model: str, identity: str, label: str,
              paths: list[Path], view: Path) -> Outputs:
    """One class's adapter (generator.adapter's recipe) on the generator `model`, published to `view`."""
    g = settings.generator
    return run_verified(
        adapt_class, step_log, step, view=view, kind=kind, adapter=g.adapter, prompt=g.prompt, model=model,
        model_identity=identity, class_label=label, display_name=settings.display_name(label),
        images=[p.as_posix() for p in paths], images_md5=images_digest([(p, label) for p in paths]),
        runtime=settings.runtime, allow_pickle=g.allow_pickle)


def current_adapters(settings: Settings, classes: list[str]) -> tuple[tuple[str, str], ...]:
    """(folder, digest) of each adapter under <workdir>/adapters made on the generator as it is now, for a class
    of the data: what every method, benchmark and night loads with the generator; none with generator.adapt: none,
    whatever earlier runs left there."""
    from models.adapters import CARD

    if settings.generator.adapt == "none":
        return ()
    root, identity = settings.workdir / ADAPTERS, model_identity(settings.generator_model)
    found = []
    for label in classes:
        try:
            card = json.loads((root / label / CARD).read_text())
        except (OSError, ValueError):
            continue
        if card.get("base_digest") == identity:
            found.append(((root / label).as_posix(), model_identity((root / label).as_posix())))
    return tuple(found)


def train_generator(settings: Settings, data: DataVersion, split: Outputs, step_log: StepLog, view: Path,
                    label: str = "train-generator", refresh: bool = False) -> Outputs:
    """The embedded generator trained on the split (cached), into `view`; not registered here."""
    return run_verified(_step(train_generator_model, refresh), step_log, label, view=view,
                        **generator_inputs(settings, data, split))


def generator_inputs(settings: Settings, data: DataVersion, split: Outputs) -> dict:
    """What the embedded generator's training reads: the dataset, its recipe, each class's prompt."""
    return dict(dataset=settings.dataset, embedded=settings.generator.embedded,
                prompts=settings.prompts(split.info["classes"]), dataset_md5=data.md5, split=split,
                runtime=settings.runtime)


def select(settings: Settings, confusion: Outputs, split: Outputs, step_log: StepLog) -> Outputs:
    return run_verified(select_hard_negatives, step_log, cfg=settings.select, many_shot=settings.evaluate.many_shot,
                        few_shot=settings.evaluate.few_shot, confusion=confusion, split=split,
                        dataset_root=settings.dataset.path, view=settings.workdir / "selection")


def selection_edits(settings: Settings, selection: Outputs, method: str | None = None) -> list[Edit]:
    """The selection's edits by `method` (default: select.method) at its default ratio."""
    method = method or settings.select.method
    rows = pd.read_csv(selection["selection"], dtype=str)
    return edits_from_selection(rows, method, methods.get(method).default_ratio(settings.genie), settings.generator.seed)


def generate_edits(settings: Settings, data: DataVersion, split: Outputs, edits: list[Edit], out_dir: Path,
                   step_log: StepLog, prefix: str = "generate", extractor: Outputs | None = None,
                   shard_size: int | None = None) -> tuple[dict[Edit, str], dict]:
    """Edits in shards, each a cached task; on Dask they run in parallel on the workers.

    Returns the image path of every kept edit, and the totals of this call.
    """
    edits = list(dict.fromkeys(edits))
    size = shard_size or settings.select.shard_size
    shards = [edits[i : i + size] for i in range(0, len(edits), size)]
    common = dict(generator=settings.generator, genie=settings.genie, model=settings.generator_model,
                  prompts=settings.prompts(split.info["classes"]), model_identity=model_identity(settings.generator_model),
                  adapters=current_adapters(settings, split.info["classes"]),
                  dataset_root=settings.dataset.path, dataset_md5=data.md5, split=split, extractor=extractor,
                  out_dir=out_dir, runtime=settings.runtime)
    labels = [f"{prefix}-shard-{i}" for i in range(len(shards))]
    results = run_verified_all(generate_shard, step_log, labels, [dict(edits=shard, **common) for shard in shards],
                               parallel=settings.runner.kind == "dask")
    sync_manifest(out_dir)
    made = {edit: result.files[key] for shard, result in zip(shards, results)
            for edit, key in zip(shard, result.info["keys"]) if key}
    fresh = [r for label, r in zip(labels, results) if step_log[label] == "ran"]  # cached shards made nothing now
    totals = {"requested": len(edits), "generated": sum(r.info["generated"] for r in fresh),
              "dropped": sum(r.info["dropped"] for r in fresh)}
    totals["existing"] = totals["requested"] - totals["generated"] - totals["dropped"]
    get_run_logger().info("%s: %d shards, %d edits, %d generated now, %d already there, %d dropped", prefix,
                          len(shards), totals["requested"], totals["generated"], totals["existing"], totals["dropped"])
    return made, totals


def generate_selection(settings: Settings, data: DataVersion, split: Outputs, selection: Outputs,
                       classifier: Outputs, step_log: StepLog) -> tuple[list[tuple[str, str, str]], dict]:
    """The nightly selection's hard negatives: (image path, label, source class) of every kept edit."""
    method = settings.select.method
    made, totals = generate_edits(settings, data, split, selection_edits(settings, selection),
                                  settings.workdir / "generated" / method, step_log,
                                  extractor=classifier if methods.get(method).needs_extractor else None)
    return [(path, edit.label, edit.source_class) for edit, path in made.items()], totals
