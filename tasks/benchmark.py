"""Benchmark steps: the base-class split for the few-shot extractor, episode scoring, judging."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from models.benchmarks.consistency import judge
from models.benchmarks.episodes import Episode, FeatureBank, Variant, run_episodes
from models.classifier import Embedder, classify
from models.config import ClassifierConfig
from models.dataset import read_manifest
from models.editing import Edit
from tasks.caching import Outputs, cached_task


@cached_task(name="restrict-split")
def restrict_split(split: Outputs, classes: list[str], out_dir: Path) -> Outputs:
    """The split manifest cut down to some classes (the few-shot extractor's base classes)."""
    manifest = read_manifest(split["manifest"])
    kept = manifest[manifest["label"].isin(classes)]
    out_dir.mkdir(parents=True, exist_ok=True)
    kept.to_csv(out_dir / "split.csv", index=False)
    return Outputs.of({"classes": list(classes), "dataset_md5": split.info["dataset_md5"]},
                      manifest=out_dir / "split.csv")


@task(name="score-episodes", cache_policy=NO_CACHE)
def score_episodes(extractor: Outputs, augment: ClassifierConfig, episodes: list[Episode], plan: list[Variant],
                   made: dict[Edit, str], ada_ratios: tuple[float, ...], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every variant on every episode through the frozen extractor (features computed once)."""
    bank = FeatureBank(Embedder(extractor["checkpoint"], augment))
    scores, choices = run_episodes(bank, episodes, plan, made, ada_ratios, seed)
    get_run_logger().info("%d episodes x %d variants scored, %d images embedded", len(episodes), len(plan),
                          len(bank.cache))
    return scores, choices


@task(name="judge-images", cache_policy=NO_CACHE)
def judge_images(judge_model: Outputs, images: pd.DataFrame) -> pd.DataFrame:
    """`images` (columns image, label, source_class) judged by a classifier trained on real images only."""
    if images.empty:
        return images.assign(judged=[], p_label=[], outcome=[])
    probabilities, classes = classify(judge_model["checkpoint"], [Path(p) for p in images["image"]])
    verdicts = judge(probabilities, classes, list(images["label"]), list(images["source_class"]))
    return pd.concat([images.reset_index(drop=True), verdicts], axis=1)
