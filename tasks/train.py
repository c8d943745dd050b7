"""Train the baseline classifier on real images; fine-tune it on real + generated hard negatives."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import get_run_logger

from models.classifier import finetune_recipe, hard_negative_labels, save_checkpoint, train
from models.config import ClassifierConfig, FinetuneConfig, RuntimeConfig
from models.dataset import read_manifest, subset
from tasks.caching import Outputs, cached_task


def _fit(cfg: ClassifierConfig, dataset_root: Path, split: Outputs, image_size: int, out_dir: Path,
         extra: tuple[list[Path], list] = ([], []), init: Path | None = None,
         runtime: RuntimeConfig | None = None) -> Outputs:
    manifest = read_manifest(split["manifest"])
    classes = split.info["classes"]
    paths, labels = subset(manifest, dataset_root, "train", classes)
    start = time.monotonic()
    trained = train(
        (paths + extra[0], labels + extra[1]),
        subset(manifest, dataset_root, "val", classes),
        len(classes),
        image_size,
        cfg,
        init=init,
        runtime=runtime,
    )
    seconds = time.monotonic() - start
    save_checkpoint(out_dir / "model.pt", trained.model, cfg.model, classes, image_size)
    pd.DataFrame(trained.history).to_csv(out_dir / "history.csv", index=False)
    get_run_logger().info(
        "%s on %d real + %d generated images: best val accuracy %.4f at epoch %d of %d, %.0f s",
        cfg.model, len(paths), len(extra[0]), trained.best_val_accuracy, trained.best_epoch,
        len(trained.history), seconds,
    )
    info = {
        "best_val_accuracy": trained.best_val_accuracy,
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.history),
        "train_seconds": seconds,
        "real_images": len(paths),
        "generated_images": len(extra[0]),
        "history": trained.history,
    }
    return Outputs.of(info, checkpoint=out_dir / "model.pt", history=out_dir / "history.csv")


@cached_task(name="train-classifier")
def train_classifier(
    cfg: ClassifierConfig, dataset_root: Path, dataset_md5: str, split: Outputs, image_size: int, out_dir: Path,
    runtime: RuntimeConfig | None = None,
) -> Outputs:
    return _fit(cfg, dataset_root, split, image_size, out_dir, runtime=runtime)


@cached_task(name="finetune-classifier")
def finetune_classifier(
    cfg: ClassifierConfig, finetune: FinetuneConfig, dataset_root: Path, dataset_md5: str, split: Outputs,
    image_size: int, base: Outputs, generated: list[tuple[str, str, str]], generated_md5: str, out_dir: Path,
    runtime: RuntimeConfig | None = None,
) -> Outputs:
    """Start from the baseline's weights, with the generated images (hard negatives) beside the real ones."""
    labels = hard_negative_labels(generated, split.info["classes"], finetune.soft_label)
    extra = ([Path(p) for p, _, _ in generated], labels)
    return _fit(finetune_recipe(cfg, finetune), dataset_root, split, image_size, out_dir, extra, init=base["checkpoint"],
                runtime=runtime)
