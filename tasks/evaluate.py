"""Evaluate a classifier checkpoint on the untouched test split."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from prefect import get_run_logger
from torch.utils.data import DataLoader

from models.classifier import Images, load_checkpoint, loader_settings, predict_proba, resolve_device, transforms
from models.config import EvaluateConfig
from models.dataset import class_counts, read_manifest, subset
from models.evaluation import (
    class_groups,
    evaluate_predictions,
    group_metrics,
    group_table,
    per_class_table,
    plot_confusion,
    soft_confusion,
)
from tasks.caching import Outputs, cached_task


@cached_task(name="evaluate-classifier")
def evaluate_classifier(model: Outputs, split: Outputs, dataset_root: Path, cfg: EvaluateConfig, out_dir: Path,
                        on: str = "test") -> Outputs:
    """Metrics, per-class figures, confusion (counts and probability mass) and predictions on one split (`on`).
    The split names the dataset digest it was made from, so the same paths with other pixels are scored again."""
    network, meta = load_checkpoint(model["checkpoint"])
    manifest = read_manifest(split["manifest"])
    classes = meta["classes"]
    unknown = sorted(set(manifest["label"]) - set(classes))
    if unknown:
        raise ValueError(f"the model knows classes {', '.join(classes)}; the data also has {', '.join(unknown)}")
    device = resolve_device("auto")  # the machine's, not a parameter: where it runs is in no cache key
    loader = DataLoader(
        Images(*subset(manifest, dataset_root, on, classes), transforms(network, meta["image_size"])),
        batch_size=256,
        **loader_settings(device),
    )
    probabilities, true = predict_proba(network, loader, device)
    predicted = probabilities.argmax(1)
    train_counts = class_counts(manifest).to_dict()
    groups = class_groups(train_counts, cfg.many_shot, cfg.few_shot)
    metrics, matrix = evaluate_predictions(true, predicted, classes, groups)
    rows = manifest[manifest["split"] == on]  # in the loader's order
    actual, named = [classes[i] for i in true], [classes[i] for i in predicted]
    per_group = group_table(actual, named, list(rows["context"])) if "context" in rows else None
    metrics |= group_metrics(per_group) if per_group is not None else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    matrix.to_csv(out_dir / "confusion.csv")
    per_class_table(matrix, groups, train_counts).to_csv(out_dir / "per_class.csv", index=False)
    soft_confusion(true, probabilities, classes).to_csv(out_dir / "soft_confusion.csv")
    pd.DataFrame({"path": list(rows["path"]), "actual": actual, "predicted": named}).to_csv(
        out_dir / "predictions.csv", index=False)
    grouped = {}
    if per_group is not None:
        per_group.to_csv(out_dir / "per_group.csv", index=False)
        grouped = {"per_group": out_dir / "per_group.csv"}
    plot_confusion(matrix, out_dir / "confusion.png", f"{on} accuracy {metrics['accuracy']:.4f}")
    get_run_logger().info("%s accuracy %.4f on %d images", on, metrics["accuracy"], len(true))
    return Outputs.of(
        {"metrics": metrics, "groups": groups, "classes": classes},
        metrics=out_dir / "metrics.json",
        per_class=out_dir / "per_class.csv",
        confusion=out_dir / "confusion.csv",
        confusion_plot=out_dir / "confusion.png",
        predictions=out_dir / "predictions.csv",
        soft_confusion=out_dir / "soft_confusion.csv",
        **grouped,
    )
