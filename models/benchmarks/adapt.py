"""The adapters benchmark's figures: does the generator show a class it was never trained on once an adapter
teaches it, and are the other classes left as they were?"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from models.editing import Edit, EditRunner


def edits(manifest: pd.DataFrame, root: Path | str, classes: list[str], held: str, samples: int, pairs: int,
          ratio: float, seed: int) -> list[Edit]:
    """Text-to-image samples of every class, and GeNIe edits of the other classes' test images towards the held-out
    class and (as many) towards another class than their own."""
    rng = np.random.default_rng(seed)
    # a sample's seed follows its "source": a number per sample
    made = [Edit.make(f"sample {i}", "", label, "txt2img", None, seed) for label in classes for i in range(samples)]
    others = [c for c in classes if c != held]
    test = manifest[(manifest["split"] == "test") & manifest["label"].isin(others)].reset_index(drop=True)
    rows = test.iloc[rng.choice(len(test), size=2 * pairs, replace=len(test) < 2 * pairs)]
    for i, (_, row) in enumerate(rows.iterrows()):
        target = held if i < pairs else str(rng.choice([c for c in others if c != row["label"]]))
        made.append(Edit.make(str(Path(root) / row["path"]), row["label"], target, "genie", ratio, seed))
    return made


def figures(runner: EditRunner, made: list[Edit], judge: Callable[[list], list[str]], held: str) -> dict[str, float]:
    """The share of each group's images the real-data judge names as their target."""
    runner.run(made, progress=False)
    kept = [e for e in made if runner.made(runner.key(e))]
    named = np.asarray(judge([runner.image(runner.key(e)) for e in kept])) == [e.label for e in kept]
    share = {}
    for method, name in (("txt2img", "txt2img"), ("genie", "genie")):
        for group, test in (("held_out", lambda e: e.label == held), ("others", lambda e: e.label != held)):
            chosen = [ok for e, ok in zip(kept, named) if e.method == method and test(e)]
            share[f"{name}.{group}"] = float(np.mean(chosen)) if chosen else float("nan")
    return share
