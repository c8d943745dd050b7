"""Train the baseline classifier on the real train split."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from prefect import get_run_logger

from models.classifier import save_checkpoint, train
from models.config import Classifier as ClassifierConfig
from models.dataset import read_manifest, subset
from tasks.caching import Outputs, cached_task


@cached_task(name="train-classifier")
def train_classifier(
    cfg: ClassifierConfig, dataset_root: Path, dataset_md5: str, split: Outputs, image_size: int, out_dir: Path
) -> Outputs:
    manifest = read_manifest(split["manifest"])
    classes = split.info["classes"]
    start = time.monotonic()
    trained = train(
        subset(manifest, dataset_root, "train", classes),
        subset(manifest, dataset_root, "val", classes),
        len(classes),
        image_size,
        cfg,
    )
    seconds = time.monotonic() - start
    save_checkpoint(out_dir / "model.pt", trained.model, cfg.model, classes, image_size)
    pd.DataFrame(trained.history).to_csv(out_dir / "history.csv", index=False)
    get_run_logger().info(
        "%s: best val accuracy %.4f at epoch %d of %d, %.0f s",
        cfg.model, trained.best_val_accuracy, trained.best_epoch, len(trained.history), seconds,
    )
    info = {
        "best_val_accuracy": trained.best_val_accuracy,
        "best_epoch": trained.best_epoch,
        "epochs_run": len(trained.history),
        "train_seconds": seconds,
        "history": trained.history,
    }
    return Outputs.of(info, checkpoint=out_dir / "model.pt", history=out_dir / "history.csv")
