"""The long-tail benchmark's settings per seed, equal-budget edits per variant, and its tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.benchmarks.episodes import Variant
from models.benchmarks.results import benchmark_dir
from models.config import Settings, default_ratio
from models.editing import Edit, edits_from_selection, replicas

BASELINE = "baseline (no fine-tuning)"
METRICS = ("accuracy", "accuracy.many", "accuracy.medium", "accuracy.few")


def long_tail_settings(settings: Settings, seed: int) -> Settings:
    """The same project with a long-tailed train split, its own seed and its own artifact folder."""
    cfg = settings.benchmark.long_tail
    data = settings.model_dump()
    data["dataset"]["long_tail"] = {"imbalance_ratio": cfg.imbalance_ratio, "seed": seed}
    data["classifier"]["seed"] = seed
    data["generator"]["model"] = settings.generator_model
    data["select"] |= {"targets": "tail", "per_target": cfg.per_target}
    data["paths"]["artifacts"] = benchmark_dir(settings) / "long-tail" / f"seed-{seed}"
    return Settings.model_validate(data)


def long_tail_edits(settings: Settings, variant: Variant, selection: pd.DataFrame, manifest: pd.DataFrame) -> list[Edit]:
    """Equal budgets: as many images per tail class as its confusion-driven selection has sources.
    GeNIe / Txt2Img follow the selection; Img2Img edits the class's own train images instead."""
    if variant.method == "real":
        return []
    method = variant.method.removesuffix("+filter")
    if method != "img2img":
        return edits_from_selection(selection, method, default_ratio(method, settings.genie), settings.generator.seed)
    train = manifest[manifest["split"] == "train"]
    root = Path(settings.dataset.path)
    return [edit for target, n in selection.groupby("target").size().items()
            for edit in replicas([str(root / p) for p in train.loc[train["label"] == target, "path"]], target, n,
                                 "img2img", variant.ratio, settings.generator.seed)]


def result_row(seed: int, label: str, metrics: dict, generated: int) -> dict:
    return {"seed": seed, "variant": label, "generated_images": generated,
            **{k: metrics.get(k, np.nan) for k in METRICS}}


def summarise_seeds(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, per variant, in the order they ran."""
    grouped = per_seed.groupby("variant", sort=False)[[*METRICS, "generated_images"]]
    table = grouped.mean().add_suffix(".mean").join(grouped.std(ddof=0).add_suffix(".std"))
    return table.assign(seeds=grouped.size()).reset_index()
