"""Evaluation at any class count: a handful of flat metrics, per-class figures as one table, a confusion plot
of bounded size."""
import struct
import time

import numpy as np
import pandas as pd

from models.evaluation import confused_pairs, evaluate_predictions, per_class_table, plot_confusion


def png_size(path) -> tuple[int, int]:
    """Width and height from the PNG's header."""
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_a_thousand_classes_make_a_bounded_plot_and_a_handful_of_metrics(tmp_path):
    rng = np.random.default_rng(0)
    classes = [f"class number {i:04d}" for i in range(1000)]
    true, predicted = rng.integers(0, 1000, 20_000), rng.integers(0, 1000, 20_000)  # noise: the worst to compress
    metrics, matrix = evaluate_predictions(true, predicted, classes, {})
    assert set(metrics) == {"accuracy", "accuracy.many"}
    started = time.monotonic()
    plot_confusion(matrix, tmp_path / "cm.png")
    assert time.monotonic() - started < 30  # a few seconds alone; generous for a shared machine
    width, height = png_size(tmp_path / "cm.png")
    assert width <= 1400 and height <= 1400
    assert (tmp_path / "cm.png").stat().st_size < 2_000_000


def test_per_class_figures_come_from_the_confusion_matrix():
    matrix = pd.DataFrame([[2, 0, 0, 0], [1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0]], index=list("abcd"),
                          columns=list("abcd"))  # c is never predicted, d has no images
    table = per_class_table(matrix, {"a": "many", "c": "few", "d": "few"}, {"a": 150, "b": 50}).set_index("class")
    assert table["group"].tolist() == ["many", "many", "few", "few"]
    assert table["train_images"].tolist() == [150, 50, 0, 0]
    assert table["images"].tolist() == [2, 2, 2, 0]
    assert table["accuracy"].tolist()[:3] == [1.0, 0.5, 0.0] and np.isnan(table.at["d", "accuracy"])
    assert table.at["a", "precision"] == 2 / 3 and table.at["b", "precision"] == 1 / 3
    assert np.isnan(table.at["c", "precision"])
    pairs = confused_pairs(matrix)
    assert list(zip(pairs["true"], pairs["predicted"], pairs["count"])) == [("c", "b", 2), ("b", "a", 1)]
