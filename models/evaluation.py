"""Accuracy overall and per many / medium / few-shot group, and per (class, context) group where the data
records a context; per class as one table; the confusion matrix
and its plot, bounded at any class count."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MAX_INCHES = 14.0  # the confusion plot's longest side: 1,400 px at 100 dpi, whatever the class count
LABELLED = 50  # classes named on the heatmap's axes; more would overlap
ANNOTATED = 30  # classes whose cells show their counts
CONFUSED_PAIRS = 30  # bars beside a heatmap too large to name its classes


def class_groups(train_counts: dict[str, int], many_shot: int, few_shot: int) -> dict[str, str]:
    """'many' above many_shot train images, 'few' below few_shot, 'medium' between."""
    return {
        label: "many" if n > many_shot else "few" if n < few_shot else "medium"
        for label, n in train_counts.items()
    }


def evaluate_predictions(
    true: np.ndarray, predicted: np.ndarray, classes: list[str], groups: dict[str, str]
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics (flat, MLflow-ready: overall and per group, a handful at any class count; per class see
    `per_class_table`) and the confusion matrix (rows: true class, columns: predicted)."""
    correct = true == predicted
    metrics = {"accuracy": float(correct.mean())}
    group_of = np.array([groups.get(label, "many") for label in classes])
    for group in ("many", "medium", "few"):
        mask = np.isin(true, np.flatnonzero(group_of == group))
        if mask.any():
            metrics[f"accuracy.{group}"] = float(correct[mask].mean())
    k = len(classes)  # rows: actual, columns: predicted (as sklearn's confusion_matrix, without its import time)
    matrix = np.bincount(np.asarray(true) * k + np.asarray(predicted), minlength=k * k).reshape(k, k)
    return metrics, pd.DataFrame(matrix, index=classes, columns=classes)


def group_table(actual: list[str], predicted: list[str], context: list[str]) -> pd.DataFrame:
    """Accuracy per group, a (class, context) pair such as a shape on a background, worst first; images without a
    context are left out."""
    rows = pd.DataFrame({"class": actual, "context": context, "correct": np.equal(actual, predicted)})
    rows = rows[rows["context"] != ""]
    table = rows.groupby(["class", "context"])["correct"].agg(accuracy="mean", images="size").reset_index()
    return table.sort_values(["accuracy", "class", "context"]).reset_index(drop=True)


def group_metrics(groups: pd.DataFrame) -> dict[str, float]:
    """Worst-group accuracy and the mean over groups (each group counted once, whatever its size)."""
    if groups.empty:
        return {}
    return {"accuracy.worst_group": float(groups["accuracy"].min()), "accuracy.group_mean": float(groups["accuracy"].mean())}


def per_class_table(matrix: pd.DataFrame, groups: dict[str, str], train_counts: dict[str, int] | None = None
                    ) -> pd.DataFrame:
    """One row per class, from the confusion matrix: its group, train images (when given), evaluated images,
    accuracy (its recall) and precision; accuracy is empty for a class without images, precision for one
    never predicted."""
    counts = matrix.values
    hits, actual, predicted = np.diag(counts).astype(float), counts.sum(1), counts.sum(0)
    table = pd.DataFrame({"class": matrix.index, "group": [groups.get(label, "many") for label in matrix.index]})
    if train_counts is not None:
        table["train_images"] = [int(train_counts.get(label, 0)) for label in matrix.index]
    table["images"] = actual
    table["accuracy"] = np.divide(hits, actual, out=np.full(len(hits), np.nan), where=actual > 0)
    table["precision"] = np.divide(hits, predicted, out=np.full(len(hits), np.nan), where=predicted > 0)
    return table


def confused_pairs(matrix: pd.DataFrame, top: int = CONFUSED_PAIRS) -> pd.DataFrame:
    """The `top` largest off-diagonal cells as (true, predicted, count), largest first."""
    values = matrix.values.astype(float)
    np.fill_diagonal(values, 0)
    cells = np.argsort(-values, axis=None, kind="stable")[:top]
    rows, columns = np.unravel_index(cells[values.flat[cells] > 0], values.shape)
    return pd.DataFrame({"true": matrix.index[rows], "predicted": matrix.columns[columns],
                         "count": values[rows, columns]})


def soft_confusion(true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> pd.DataFrame:
    """Probability mass each true class puts on each class: confusion that a 99%-accurate model
    still shows, where hard counts are mostly zero."""
    matrix = np.zeros((len(classes), len(classes)))
    np.add.at(matrix, true, probabilities)
    return pd.DataFrame(matrix, index=classes, columns=classes)


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _pairs_chart(ax, pairs: pd.DataFrame) -> None:
    names = [f"{_short(true)} → {_short(wrong)}" for true, wrong in zip(pairs["true"], pairs["predicted"])]
    ax.barh(range(len(pairs)), pairs["count"], color="C3")
    ax.set_yticks(range(len(pairs)), names, fontsize=7)
    ax.invert_yaxis()  # the most confused on top
    ax.set_xlabel("images")
    ax.set_title(f"most-confused pairs (true → predicted), top {len(pairs)}")


def plot_confusion(matrix: pd.DataFrame, path: Path, title: str = "confusion matrix") -> None:
    """The confusion heatmap, at most MAX_INCHES a side at 100 dpi: counts in the cells up to ANNOTATED
    classes, class names on the axes up to LABELLED; above that the heatmap goes bare (names would overlap)
    and the most-confused pairs are drawn beside it as bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(matrix)
    if n <= LABELLED:
        size = min(MAX_INCHES, max(4.0, 0.45 * n + 2))
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(matrix.values, cmap="Blues")
        ax.set_xticks(range(n), matrix.columns, rotation=90)
        ax.set_yticks(range(n), matrix.index)
        ax.set_xlabel("predicted")
    else:
        fig, (ax, bars) = plt.subplots(1, 2, figsize=(MAX_INCHES, MAX_INCHES / 2))
        ax.imshow(np.log1p(matrix.values), cmap="Blues")  # on a linear scale single confusions vanish
        ax.set_xlabel("predicted (class index: the row of per_class.csv; log scale)")
        _pairs_chart(bars, confused_pairs(matrix))
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= ANNOTATED:
        peak = matrix.values.max() or 1
        for (i, j), value in np.ndenumerate(matrix.values):
            ax.text(j, i, value, ha="center", va="center", fontsize=7, color="white" if value > peak / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
