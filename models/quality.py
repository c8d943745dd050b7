"""The generator judged by a classifier trained only on real images: does text-to-image show the prompted
class, and from which noise ratio does a GeNIe edit show its target rather than its source?"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from models.classifier import classify
from models.editing import Edit, EditRunner, select_edits
from models.engine import Engine


def random_pairs(manifest: pd.DataFrame, root: Path | str, classes: list[str], count: int, seed: int
                 ) -> list[tuple[str, str, str]]:
    """`count` seeded (source image, source class, target) pairs: train sources, each with another class as target."""
    rng = np.random.default_rng(seed)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    pairs = []
    for i in rng.choice(len(train), size=count, replace=len(train) < count):
        source = train.iloc[i]
        target = rng.choice([c for c in classes if c != source["label"]])
        pairs.append((str(Path(root) / source["path"]), source["label"], str(target)))
    return pairs


def judge_generator(engine: Engine, prompt: Callable[[str], str], batch_size: int, seed: int, manifest: pd.DataFrame,
                    root: Path | str, classes: list[str], judge: Path | str, out_dir: Path, samples_per_class: int,
                    pairs: int, ratios: tuple[float, ...]) -> dict[str, float]:
    """txt2img: the share of `samples_per_class` samples per class judged as the prompted class. GeNIe: for `pairs`
    random pairs, the share judged as the target (and as the source) at each r. `judge`: a classifier checkpoint."""
    def judged(runner: EditRunner, edits: list[Edit]) -> tuple[np.ndarray, list[Edit]]:
        """The judge's labels for the edits that were kept (a safety checker may drop some)."""
        kept = [e for e in edits if runner.made(runner.key(e))]
        probabilities, names = classify(judge, [runner.image(runner.key(e)) for e in kept])
        return np.asarray(names)[probabilities.argmax(1)], kept

    metrics: dict[str, float] = {}
    samples = EditRunner(engine, out_dir / "txt2img", prompt, batch_size)
    edits = select_edits(manifest, root, classes, "txt2img", samples_per_class, None, seed)
    samples.run(edits, progress=False)
    labels, kept = judged(samples, edits)
    metrics["txt2img.label_accuracy"] = float((labels == [e.label for e in kept]).mean())
    chosen = random_pairs(manifest, root, classes, pairs, seed)
    edits_runner = EditRunner(engine, out_dir / "genie", prompt, batch_size)
    for r in ratios:
        edits = [Edit.make(s, sc, t, "genie", r, seed) for s, sc, t in chosen]
        edits_runner.run(edits, progress=False)
        labels, kept = judged(edits_runner, edits)
        metrics[f"genie.target_share.r{r}"] = float((labels == [e.label for e in kept]).mean())
        metrics[f"genie.source_share.r{r}"] = float((labels == [e.source_class for e in kept]).mean())
    return metrics
