"""Generator flows: train the embedded diffusion model, generate hard negatives, judge quality."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger

from flows.steps import ensure_generator, prepare, train_baseline
from models.config import Settings
from models.dataset import read_manifest
from models.generation import METHODS, Edit, select_edits
from tasks.caching import Outputs
from tasks.generator import generate, judge_generator
from tasks.tracking import configure, record_run


@flow(name="genie-train-generator")
def genie_train_generator(settings: Settings) -> dict:
    configure()
    steps: dict[str, str] = {}
    data, split = prepare(settings, steps)
    model = ensure_generator(settings, data, split, steps)
    if model is None:
        return {"generator": settings.generator_model, "steps": steps, "note": "generator.model is configured"}
    return {"generator": settings.generator_model, "steps": steps,
            **{k: model.info[k] for k in ("train_seconds", "vae_mse", "unet_loss")}}


@flow(name="genie-generate")
def genie_generate(settings: Settings, method: str = "genie", per_class: int = 10, ratio: float | None = None,
                   pairs: list[tuple[str, str]] | None = None, out_dir: Path | None = None) -> dict:
    """Hard negatives for a per-class budget or explicit (source image, target class) pairs."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    if ratio is not None and not 0 < ratio <= 1:
        raise ValueError(f"--ratio {ratio}: a noise ratio must be in (0, 1]")
    configure()
    steps: dict[str, str] = {}
    data, split = prepare(settings, steps)
    classes = split.info["classes"]
    if method in ("genie", "img2img"):
        ratio = ratio if ratio is not None else (settings.genie.noise_ratio if method == "genie"
                                                 else settings.genie.img2img_ratios[0])
    elif ratio is not None:
        raise ValueError(f"--ratio does not apply to {method} (genie-ada picks r per image, txt2img uses 1.0)")
    if pairs:
        edits = explicit_edits(settings, split, method, ratio, pairs)
    else:
        edits = select_edits(read_manifest(split["manifest"]), settings.dataset.path, classes, method,
                             per_class, ratio, settings.generator.seed)
    if not edits:
        raise ValueError("empty selection: no (source, target) pairs to generate")
    ensure_generator(settings, data, split, steps)
    classifier = train_baseline(settings, data, split, steps) if method == "genie-ada" else None
    out_dir = Path(out_dir or settings.workdir / "generated") / method
    stats = generate(settings, edits, split, classifier, out_dir)
    get_run_logger().info("%s images in %s (manifest: %s)", method, out_dir, out_dir / "manifest.csv")
    return {"method": method, "out_dir": out_dir.as_posix(), "steps": steps, **stats}


def explicit_edits(settings: Settings, split: Outputs, method: str, ratio: float | None,
                   pairs: list[tuple[str, str]]) -> list[Edit]:
    classes = split.info["classes"]
    edits = []
    for source, target in pairs:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"source image {source} not found")
        if target not in classes:
            raise ValueError(f"unknown class {target!r} (classes: {', '.join(classes)})")
        edits.append(Edit.make(path.as_posix(), path.parent.name, target, method, ratio, settings.generator.seed))
    return edits


@flow(name="genie-quality")
def genie_quality(settings: Settings, samples_per_class: int = 20, pairs: int = 100) -> dict:
    """Judge the generator with a classifier trained only on real images; log to MLflow."""
    configure()
    steps: dict[str, str] = {}
    data, split = prepare(settings, steps)
    ensure_generator(settings, data, split, steps)
    classifier = train_baseline(settings, data, split, steps)
    metrics = judge_generator(settings, split, classifier, settings.workdir / "generated",
                              samples_per_class, pairs)
    run_id = record_run(settings, data, "generator-quality",
                        params={"generator": settings.generator_model, "samples_per_class": samples_per_class,
                                "pairs": pairs, "steps": settings.generator.steps,
                                "guidance": settings.generator.guidance},
                        metrics=metrics)
    return {"run_id": run_id, "steps": steps, **metrics}
