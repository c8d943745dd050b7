"""Confusion-driven source selection: hard negatives where the current model is confused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.dataset import seeded_rank


def choose_targets(confusion: pd.DataFrame, strategy: str, n_weakest: int, groups: dict[str, str]) -> list[str]:
    """all classes, the n weakest by recall on val, or the tail (non-'many') classes; a split without a tail
    (balanced, every class 'many') has no class needing it more than another, so `tail` takes them all."""
    classes = list(confusion.index)
    if strategy == "all":
        return classes
    if strategy == "weakest":
        recall = np.diag(confusion.values) / confusion.values.sum(1).clip(min=1e-12)
        order = sorted(range(len(classes)), key=lambda i: (recall[i], classes[i]))
        return [classes[i] for i in order[:n_weakest]]
    if strategy == "tail":
        return [c for c in classes if groups.get(c, "many") != "many"] or classes
    raise ValueError(f"select.targets: unknown strategy {strategy!r}")


def most_confused(confusion: pd.DataFrame, target: str, k: int) -> list[str]:
    """The k classes sharing the most confusion with `target`, either way round."""
    mass = (confusion.loc[target] + confusion[target]).drop(target)
    order = np.lexsort((mass.index.to_numpy(dtype=str), -mass.to_numpy()))  # most mass first, then by name
    return mass.index[order[:k]].tolist()


def select_sources(confusion: pd.DataFrame, manifest: pd.DataFrame, root: Path, targets: list[str], k: int,
                   per_target: int, seed: int, groups: pd.DataFrame | None = None) -> pd.DataFrame:
    """For each target, up to `per_target` train images of its k most-confused classes, taken in turn.

    Sources are ordered by a seeded hash, so the draw is deterministic and a grown dataset
    keeps earlier picks wherever the budget allows. With `groups` (val accuracy per class and context), a
    source whose context is one where the target is least often recognised comes first: its edit shows the
    target in the context the model gets it wrong in.
    """
    train = manifest[manifest["split"] == "train"]
    paths_of = train.groupby("label")["path"].apply(list).to_dict()  # once, not a scan of the split per target
    context_of = dict(zip(train["path"], train["context"])) if groups is not None else {}
    accuracy = groups.set_index(["class", "context"])["accuracy"].to_dict() if groups is not None else {}
    rows = []
    for target in targets:
        confused = most_confused(confusion, target, k)

        def order(p: str, target: str = target) -> tuple[float, str]:
            return accuracy.get((target, context_of.get(p)), 1.0), seeded_rank(f"{seed}:{target}", p)

        pools = {c: sorted(paths_of.get(c, []), key=order) for c in confused}
        picked = 0
        for depth in range(max((len(p) for p in pools.values()), default=0)):
            for c in confused:
                if picked < per_target and depth < len(pools[c]):
                    rows.append({"target": target, "source_class": c, "source": str(Path(root) / pools[c][depth]),
                                 "confusion": float(confusion.at[target, c] + confusion.at[c, target])})
                    picked += 1
    return pd.DataFrame(rows, columns=["target", "source_class", "source", "confusion"])

