"""The long-tail benchmark on data with a context (a background per image, from metadata.csv): worst-group
accuracy, whether generated images keep their source's context, and source -> edit -> Txt2Img grids."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.benchmarks.episodes import Variant, comparisons
from models.benchmarks.long_tail import BASELINE, paired_gap
from models.benchmarks.results import Gap, across_ci, mean_pm, verdict
from models.context import ContextReader

GRID_ROWS = 8


def context_reader(manifest: pd.DataFrame, root: Path | str) -> ContextReader:
    """The reader fitted on the train images' recorded contexts."""
    train = manifest[(manifest["split"] == "train") & (manifest["context"] != "")]
    return ContextReader.fit([Path(root) / p for p in train["path"]], list(train["context"]))


def seed_groups(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per variant and seed, over its (class, context) groups: the worst group's accuracy, which group that is, and
    the mean over groups."""
    accuracy = predictions.groupby(["variant", "seed", "context_group"], sort=False)["correct"].mean()
    by = accuracy.groupby(["variant", "seed"], sort=False)
    return pd.DataFrame({"worst": by.min(), "group": by.idxmin().map(lambda index: index[2]), "mean": by.mean()})


def worst_group_gap(predictions: pd.DataFrame, a: str, b: str) -> Gap | None:
    """Worst-group accuracy of a minus b, seed by seed (each variant's own worst group), with the across-seed
    interval; no within-seed one (a minimum over groups has no paired observations)."""
    if "context_group" not in predictions:
        return None
    wide = seed_groups(predictions)["worst"].unstack("variant")
    if a not in wide or b not in wide:
        return None
    per_seed = (wide[a] - wide[b]).to_numpy()
    return Gap(float(per_seed.mean()), float("nan"), across_ci(per_seed), len(per_seed), tuple(per_seed))


def context_kept(verdicts: pd.DataFrame, reader: ContextReader, manifest: pd.DataFrame, root: Path) -> pd.DataFrame:
    """Each generated image's context as the reader sees it; whether that is its source's (kept_context, none for an
    image from noise); and whether it is another context than its label's usual one in train (off_usual): an image
    of a group the train split hardly has."""
    if verdicts.empty:
        return verdicts.assign(source_context=[], context=[], kept_context=[], off_usual=[])
    contexts = dict(zip(manifest["path"], manifest["context"]))
    train = manifest[manifest["split"] == "train"]
    usual = train.groupby("label")["context"].agg(lambda c: c.value_counts().index[0])
    source = [contexts.get(Path(p).relative_to(root).as_posix(), "") if p else "" for p in verdicts["source"]]
    seen = reader.read(list(verdicts["image"]))
    kept = [float(c == s) if s else np.nan for c, s in zip(seen, source)]
    return verdicts.assign(source_context=source, context=seen, kept_context=kept,
                           off_usual=(np.array(seen) != verdicts["label"].map(usual).to_numpy()).astype(float))


def context_table(judged: pd.DataFrame) -> pd.DataFrame:
    """Per variant: the shares of its images that keep their source's context and that are off their label's usual
    context, each the mean over seeds with the across-seed interval; and the image count."""
    if judged.empty or "kept_context" not in judged:
        return pd.DataFrame()
    per_seed = judged.groupby(["variant", "seed"], sort=False)[["kept_context", "off_usual"]].mean()
    grouped = per_seed.groupby("variant", sort=False)
    table = grouped.mean().join(grouped.agg(across_ci).add_suffix(".across_ci95"))
    return table.assign(images=judged.groupby("variant", sort=False).size()).reset_index()


def context_grids(judged: pd.DataFrame, ratio: float) -> list[dict]:
    """Up to GRID_ROWS GeNIe edits at `ratio`, one per (source class, target) pair, each beside a Txt2Img image of
    the same target: source -> edit -> Txt2Img, with the context the reader sees in each."""
    genie = judged[judged["variant"] == f"genie r={ratio}"].drop_duplicates(["source_class", "label"])
    txt2img = judged[judged["variant"] == "txt2img"]
    rows = []
    for edit in genie.head(GRID_ROWS).itertuples():
        plain = txt2img[txt2img["label"] == edit.label]
        if plain.empty:
            continue
        other = plain.iloc[len(rows) % len(plain)]
        rows.append({"source": edit.source, "source_class": edit.source_class, "target": edit.label,
                     "source_context": edit.source_context, "edit": edit.image, "edit_context": edit.context,
                     "txt2img": other["image"], "txt2img_context": other["context"]})
    return rows


def compared(table: pd.DataFrame, noise_ratio: float) -> list[tuple[str, str]]:
    """The pairs the report compares (episodes.comparisons), GeNIe at the r with the best worst-group accuracy (else
    the best average: an optimistic pick on the test images) and at the configured r."""
    by = "accuracy.worst_group.mean" if "accuracy.worst_group.mean" in table else "accuracy.mean"
    means = table.set_index("variant")[by]
    return comparisons([v for v in means.index if v != BASELINE], means, keep=(Variant("genie", noise_ratio).label,))


def said_verdicts(table: pd.DataFrame, predictions: pd.DataFrame, noise_ratio: float) -> list[str]:
    """One line per compared pair and metric: average accuracy (paired over test images) and, where the data has
    contexts, worst-group accuracy; each on the across-seed interval (within-seed with one seed)."""
    lines = []
    for a, b in compared(table, noise_ratio):
        for name, gap in (("average", paired_gap(predictions, a, b)), ("worst group", worst_group_gap(predictions, a, b))):
            if gap is not None:
                lines.append(f"{name}: {a} is {verdict(gap)} {b}: {gap.mean * 100:+.1f} points "
                             f"± {gap.interval * 100:.1f} over {gap.seeds} seed(s)")
    return lines


def summary(table: pd.DataFrame, context: pd.DataFrame) -> list[dict]:
    """What `genie benchmark long-tail` prints: per variant, accuracy on average (and on the few-shot classes or the
    worst group, where there are some), mean ± the across-seed interval in percent, and the context shares."""
    rows = []
    shares = context.set_index("variant") if not context.empty else pd.DataFrame()
    for r in table.to_dict("records"):
        row = {"variant": r["variant"], "accuracy %": mean_pm(r["accuracy.mean"], r["accuracy.across_ci95"])}
        for metric, name in (("accuracy.few", "few-shot classes %"), ("accuracy.worst_group", "worst group %")):
            if f"{metric}.mean" in table and table[f"{metric}.mean"].notna().any():
                row[name] = mean_pm(r[f"{metric}.mean"], r[f"{metric}.across_ci95"])
        if not shares.empty:
            share = shares.loc[r["variant"]] if r["variant"] in shares.index else None
            for column, name in (("kept_context", "keeps source's context %"), ("off_usual", "off usual context %")):
                row[name] = "-" if share is None else mean_pm(share[column], share[f"{column}.across_ci95"])
        rows.append(row | {"images": r["generated_images.mean"]})
    return rows
