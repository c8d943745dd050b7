"""Accuracy overall, per class and per many / medium / few-shot group; the confusion matrix."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix


def metric_key(label: str) -> str:
    """A class name as MLflow accepts it in a metric name (letters, digits, _ - . / and space); the
    display name stays in the confusion matrix, the predictions and the report."""
    return re.sub(r"[^\w\-. /]", "_", label)


def class_groups(train_counts: dict[str, int], many_shot: int, few_shot: int) -> dict[str, str]:
    """'many' above many_shot train images, 'few' below few_shot, 'medium' between."""
    return {
        label: "many" if n > many_shot else "few" if n < few_shot else "medium"
        for label, n in train_counts.items()
    }


def evaluate_predictions(
    true: np.ndarray, predicted: np.ndarray, classes: list[str], groups: dict[str, str]
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics (flat, MLflow-ready) and the confusion matrix (rows: true class, columns: predicted)."""
    correct = true == predicted
    metrics = {"accuracy": float(correct.mean())}
    for index, label in enumerate(classes):
        mask = true == index
        if mask.any():
            metrics[f"accuracy.class.{metric_key(label)}"] = float(correct[mask].mean())
    group_of = np.array([groups.get(label, "many") for label in classes])
    for group in ("many", "medium", "few"):
        mask = np.isin(true, np.flatnonzero(group_of == group))
        if mask.any():
            metrics[f"accuracy.{group}"] = float(correct[mask].mean())
    matrix = confusion_matrix(true, predicted, labels=range(len(classes)))
    return metrics, pd.DataFrame(matrix, index=classes, columns=classes)


def soft_confusion(true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Probability mass each true class puts on each class: confusion that a 99%-accurate model
    still shows, where hard counts are mostly zero."""
    matrix = np.zeros((len(classes), len(classes)))
    np.add.at(matrix, true, probabilities)
    return pd.DataFrame(matrix, index=classes, columns=classes)


def plot_confusion(matrix: pd.DataFrame, path: Path, title: str = "confusion matrix") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.45 * len(matrix) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix.values, cmap="Blues")
    ax.set_xticks(range(len(matrix)), matrix.columns, rotation=90)
    ax.set_yticks(range(len(matrix)), matrix.index)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if len(matrix) <= 30:
        peak = matrix.values.max() or 1
        for (i, j), value in np.ndenumerate(matrix.values):
            ax.text(j, i, value, ha="center", va="center", fontsize=7, color="white" if value > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
