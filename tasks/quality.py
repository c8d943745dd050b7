"""Judge the generator with a classifier trained only on real images."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from prefect import get_run_logger, task

from models.classifier import classify
from models.config import Settings
from models.dataset import read_manifest
from models.editing import Edit, EditRunner, select_edits
from tasks.caching import Outputs
from tasks.editing import make_engine


@task(name="judge-generator")
def judge_generator(settings: Settings, split: Outputs, classifier: Outputs, out_dir: Path,
                    samples_per_class: int = 20, pairs: int = 100, ratios: tuple[float, ...] = (0.3, 0.5, 0.8)) -> dict:
    """Label consistency judged by a classifier trained only on real images.

    txt2img: share of samples judged as the prompted class. GeNIe: for `pairs` random
    (source, target) pairs, share judged as the target (and as the source) at each r.
    """
    classes = split.info["classes"]
    manifest = read_manifest(split["manifest"])
    engine = make_engine(settings)

    def judged(runner: EditRunner, edits: list[Edit]) -> tuple[np.ndarray, list[Edit]]:
        """The judge's labels for the edits that were kept (a safety checker may drop some)."""
        kept = [e for e in edits if runner.made(runner.key(e))]
        probabilities, names = classify(classifier["checkpoint"], [runner.image(runner.key(e)) for e in kept])
        return np.asarray(names)[probabilities.argmax(1)], kept

    metrics: dict[str, float] = {}
    samples = EditRunner(engine, out_dir / "txt2img", settings.prompt, settings.generator.batch_size)
    edits = select_edits(manifest, settings.dataset.path, classes, "txt2img", samples_per_class, None,
                         settings.generator.seed)
    samples.run(edits, progress=False)
    labels, kept = judged(samples, edits)
    metrics["txt2img.label_accuracy"] = float((labels == [e.label for e in kept]).mean())

    rng = np.random.default_rng(settings.generator.seed)
    train = manifest[manifest["split"] == "train"].reset_index(drop=True)
    chosen = []
    for i in rng.choice(len(train), size=pairs, replace=len(train) < pairs):
        source = train.iloc[i]
        target = rng.choice([c for c in classes if c != source["label"]])
        chosen.append((str(Path(settings.dataset.path) / source["path"]), source["label"], str(target)))
    edits_runner = EditRunner(engine, out_dir / "genie", settings.prompt, settings.generator.batch_size)
    for r in ratios:
        edits = [Edit.make(s, sc, t, "genie", r, settings.generator.seed) for s, sc, t in chosen]
        edits_runner.run(edits, progress=False)
        labels, kept = judged(edits_runner, edits)
        metrics[f"genie.target_share.r{r}"] = float((labels == [e.label for e in kept]).mean())
        metrics[f"genie.source_share.r{r}"] = float((labels == [e.source_class for e in kept]).mean())
    get_run_logger().info("generator quality: %s", ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return metrics
