"""Generator flows: train the embedded diffusion model, generate hard negatives, judge quality."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.stages import (
    StepLog,
    current_adapters,
    ensure_generator,
    generate_edits,
    one_writer,
    prepare,
    train_baseline,
)
from models import methods
from models.config import Settings
from models.dataset import read_manifest
from models.edit_folder import MANIFEST
from models.editing import edits_from_pairs, select_edits
from tasks.quality import judge_generator
from tasks.registry import tag_current_generator
from tasks.tracking import record_run


@flow(name="genie-train-generator")
@one_writer
def genie_train_generator(settings: Settings, force: bool = False) -> dict:
    """Train the embedded generator when the retrain policy (or `force`) says so, else keep the current one."""
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    choice = ensure_generator(settings, data, split, step_log, force)
    get_run_logger().info("train-generator: %s (%s)", choice["decision"], choice["reason"])
    return {"generator": settings.generator_model, "step_log": step_log, **choice}


@flow(name="genie-generate")
@one_writer
def genie_generate(settings: Settings, method: str = "genie", per_class: int = 10, ratio: float | None = None,
                   pairs: list[tuple[str, str]] | None = None, out_dir: Path | None = None, wait: bool = True,
                   retrain: bool = False) -> dict:
    """Hard negatives for a per-class budget or explicit (source image, target class) pairs."""
    kind = methods.get(method)  # an unknown or internal method: one line naming the valid ones
    if ratio is not None and not 0 < ratio <= 1:
        raise ValueError(f"--ratio {ratio}: a noise ratio must be in (0, 1]")
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    classes = split.info["classes"]
    if ratio is not None and kind.ratio != "given":
        raise ValueError(f"--ratio does not apply to {method} ({'it picks r per image' if kind.ratio == 'chosen' else 'it starts from noise'})")
    ratio = ratio if ratio is not None else kind.default_ratio(settings.genie)
    if pairs:
        edits = edits_from_pairs(pairs, classes, method, ratio, settings.generator.seed)
    else:
        edits = select_edits(read_manifest(split["manifest"]), settings.dataset.path, classes, method,
                             per_class, ratio, settings.generator.seed)
    if not edits:
        raise ValueError("empty selection: no (source, target) pairs to generate")
    ensure_generator(settings, data, split, step_log, replace=None if retrain else "genie generate")
    extractor = train_baseline(settings, data, split, step_log) if kind.needs_extractor else None
    out_dir = Path(out_dir or settings.workdir / "generated") / method
    _, totals = generate_edits(settings, data, split, edits, out_dir, step_log, extractor=extractor)
    get_run_logger().info("%s images in %s (rows: %s, read them with models.edit_folder.edits)", method, out_dir,
                          out_dir / MANIFEST)
    return {"method": method, "out_dir": out_dir.as_posix(), "step_log": step_log, **totals}


@flow(name="genie-quality")
@one_writer
def genie_quality(settings: Settings, samples_per_class: int = 20, pairs: int = 100, retrain: bool = False) -> dict:
    """Judge the generator with a classifier trained only on real images; log to MLflow."""
    step_log: StepLog = {}
    data, split = prepare(settings, step_log)
    ensure_generator(settings, data, split, step_log, replace=None if retrain else "genie quality")
    classifier = train_baseline(settings, data, split, step_log)
    metrics = judge_generator(settings.generator, settings.generator_model, settings.prompts(split.info["classes"]),
                              settings.dataset.path, split, classifier, settings.workdir / "generated",
                              samples_per_class, pairs, adapters=current_adapters(settings, split.info["classes"]))
    tag_current_generator(settings.registered_generator, metrics)
    run_id = record_run(settings.dataset.name, data, "generator-quality",
                        params={"generator": settings.generator_model, "samples_per_class": samples_per_class,
                                "pairs": pairs, "steps": settings.generator.steps,
                                "guidance": settings.generator.guidance},
                        metrics=metrics)
    return {"run_id": run_id, "step_log": step_log, **metrics}
