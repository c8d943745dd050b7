"""The long-tail benchmark's settings per seed, equal-budget edits per variant, and its tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models import methods
from models.benchmarks.consistency import consistent
from models.benchmarks.episodes import Variant
from models.benchmarks.results import IMAGE_COLUMNS, Gap, across_ci, gap_between, image_rows, mean_ci, within_ci
from models.config import Settings
from models.editing import Edit, edits_from_selection, replicas

BASELINE = "baseline (no fine-tuning)"
METRICS = ("accuracy", "accuracy.many", "accuracy.medium", "accuracy.few", "accuracy.worst_group",
           "accuracy.group_mean")


def long_tail_edits(settings: Settings, variant: Variant, selection: pd.DataFrame, manifest: pd.DataFrame) -> list[Edit]:
    """Equal budgets: as many images per tail class as its confusion-driven selection has sources.
    The hard negatives and samples from noise follow the selection; a method on a class's own images (Img2Img)
    edits that class's train images instead."""
    if not variant.generates:
        return []
    method = variant.method
    if methods.get(method).source != "own":
        return edits_from_selection(selection, method, variant.ratio, settings.generator.seed)
    train = manifest[manifest["split"] == "train"]
    root = Path(settings.dataset.path)
    return [edit for target, n in selection.groupby("target").size().items()
            for edit in replicas([str(root / p) for p in train.loc[train["label"] == target, "path"]], target, n,
                                 method, variant.ratio, settings.generator.seed)]


def variant_images(made: dict[Edit, str], variant: Variant, edits: list[Edit], seed: int) -> pd.DataFrame:
    """The variant's images of one seed, one row each, for the judge."""
    return pd.DataFrame(image_rows(made, variant.label, edits), columns=IMAGE_COLUMNS).assign(seed=seed)


def kept_images(verdicts: pd.DataFrame, variant: Variant, threshold: float) -> pd.DataFrame:
    """What the variant fine-tunes on: every judged image, or with its filter those the judge finds consistent."""
    if variant.filter and len(verdicts):
        return verdicts[consistent(verdicts["p_label"], threshold)]
    return verdicts


def result_row(seed: int, label: str, metrics: dict, generated: int) -> dict:
    return {"seed": seed, "variant": label, "generated_images": generated,
            **{k: metrics.get(k, np.nan) for k in METRICS}}


def prediction_rows(seed: int, label: str, evaluation, contexts: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per test image of an evaluation: right or wrong, its class's group (many / medium / few) and, with
    `contexts` (path -> context), its (class, context) group."""
    predictions = pd.read_csv(evaluation["predictions"], dtype=str)
    rows = pd.DataFrame({"seed": seed, "variant": label, "image": range(len(predictions)),
                         "group": predictions["actual"].map(evaluation.info["groups"]),
                         "correct": (predictions["actual"] == predictions["predicted"]).astype(int)})
    if contexts:
        rows["context_group"] = predictions["actual"] + " on " + predictions["path"].map(contexts).fillna("")
    return rows


def paired_gap(predictions: pd.DataFrame, a: str, b: str, group: str | None = None) -> Gap | None:
    """accuracy(a) - accuracy(b) over the same test images of each seed (of one class group, if given)."""
    rows = predictions if group is None else predictions[predictions["group"] == group]
    return gap_between(rows, a, b, "image", "correct")


def summarise_seeds(per_seed: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Per variant, in the order they ran: the mean over seeds with the across-seed 95% interval of every
    metric; for overall and few-shot-class accuracy also the within-seed interval (the seed's test images)."""
    metrics = [m for m in METRICS if m in per_seed]  # worst-group figures only where the data has contexts
    grouped = per_seed.groupby("variant", sort=False)[[*metrics, "generated_images"]]
    table = grouped.mean().add_suffix(".mean").join(grouped.agg(across_ci).add_suffix(".across_ci95"))
    for metric, group in (("accuracy", None), ("accuracy.few", "few")):
        rows = predictions if group is None else predictions[predictions["group"] == group]
        within = {variant: within_ci([mean_ci(g["correct"])[1] for _, g in by_seed.groupby("seed")])
                  for variant, by_seed in rows.groupby("variant")}
        table[f"{metric}.ci95"] = table.index.map(within)
    return table.drop(columns="generated_images.across_ci95").assign(seeds=grouped.size()).reset_index()
