"""Label consistency of generated images, judged by a classifier trained only on real images."""
from __future__ import annotations

import numpy as np
import pandas as pd

OUTCOMES = ("as label", "as source", "neither")


def judge(probabilities: np.ndarray, classes: list[str], labels: list[str], sources: list[str]) -> pd.DataFrame:
    """Per image: the judge's class, its probability for the image's label, and the outcome:
    judged as its label, as its source class (the edit did not take), or as neither (a failure)."""
    index = {c: i for i, c in enumerate(classes)}
    judged = [classes[i] for i in probabilities.argmax(1)]
    p_label = [float(probabilities[row, index[label]]) if label in index else 0.0 for row, label in enumerate(labels)]
    outcome = ["as label" if j == label else "as source" if j == source else "neither"
               for j, label, source in zip(judged, labels, sources)]
    return pd.DataFrame({"judged": judged, "p_label": p_label, "outcome": outcome})


def consistency_table(judged: pd.DataFrame, by: str = "variant") -> pd.DataFrame:
    """Share of each outcome per group, plus the image count (empty when nothing was judged)."""
    if judged.empty:
        return pd.DataFrame()
    shares = pd.crosstab(judged[by], judged["outcome"], normalize="index").reindex(columns=OUTCOMES, fill_value=0.0)
    return shares.assign(images=judged.groupby(by).size()).reset_index()


def consistent(p_label, threshold: float) -> np.ndarray:
    """The label-consistency filter: keep edits the judge gives their label at least `threshold`."""
    return np.asarray(p_label, dtype=float) >= threshold
