"""GeNIe-Ada, fast against exact: held-out pairs, how often the two pick the same r*, and what a kept
image costs each way (and GeNIe, the yardstick)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.benchmarks.few_shot import paired
from models.dataset import seeded_rank
from models.editing import Edit, edit_seed

# (row label, method, Ada mode, sampler steps x) of the cost table, GeNIe first: the others are measured against
# it. Exact Ada at twice the sampler steps tells how far exact's own choice moves when only the sampler changes.
METHODS = (("genie", "genie", None, 1), ("genie-ada exact", "genie-ada", "exact", 1),
           ("genie-ada fast", "genie-ada", "fast", 1), ("genie-ada exact 2x steps", "genie-ada", "exact", 2))


def held_out_pairs(manifest: pd.DataFrame, root: Path, classes: list[str], count: int, seed: int
                   ) -> list[tuple[str, str, str]]:
    """(source image, source class, target) for `count` test images, which neither the generator nor
    Ada's extractor trained on; each gets a seeded target among the other classes."""
    test = manifest[manifest["split"] == "test"]
    rows = sorted(test.itertuples(index=False), key=lambda row: seeded_rank(f"ada:{seed}", row.path))[:count]
    pairs = []
    for row in rows:
        others = [c for c in classes if c != row.label]
        pairs.append((str(Path(root) / row.path), row.label, others[edit_seed(seed, row.path, "ada") % len(others)]))
    return pairs


def held_out_edits(pairs: list[tuple[str, str, str]], method: str, ratio: float | None, seed: int) -> list[Edit]:
    return [Edit.make(source, source_class, target, method, ratio, seed) for source, source_class, target in pairs]


def ada_agreement(choices: pd.DataFrame, keys: tuple[str, ...] = ("shots", "episode", "source", "target"),
                  other: str = "fast") -> dict | None:
    """How often the `other` mode's r* equals exact Ada's on the same pairs (`choices`: mode, ratio and the key
    columns), exactly and within 0.1, with the table of exact r* (rows) against the other's (columns)."""
    wide = choices.pivot_table(index=[k for k in keys if k in choices], columns="mode", values="ratio",
                               aggfunc="first")
    if not {"exact", other} <= set(wide.columns):
        return None
    wide = wide[["exact", other]].dropna()
    gap = (wide[other] - wide["exact"]).abs().round(6)
    crosstab = pd.crosstab(wide["exact"], wide[other]).rename_axis(index="exact r*", columns=f"{other} r*")
    return {"pairs": len(wide), "same": float((gap == 0).mean()), "within_0.1": float((gap <= 0.1).mean()),
            "mean_ratio_exact": float(wide["exact"].mean()), "mean_ratio_other": float(wide[other].mean()),
            "crosstab": crosstab.reset_index().rename(columns=str)}


def summary(agreement: dict | None) -> dict:
    """The agreement's figures, without its table (for results.json and MLflow)."""
    return {k: v for k, v in (agreement or {}).items() if k != "crosstab"}


def cost_table(costs: pd.DataFrame) -> pd.DataFrame:
    """UNet evaluations and seconds per kept image, each also as a multiple of GeNIe's."""
    genie = costs.set_index("variant").loc["genie"]
    return costs.assign(
        evals_vs_genie=costs["unet_evals_per_image"] / genie["unet_evals_per_image"],
        seconds_vs_genie=costs["seconds_per_image"] / genie["seconds_per_image"],
    )


def few_shot_rows(few: dict | None) -> pd.DataFrame:
    """From the few-shot benchmark: exact and fast Ada's accuracy (with the across-seed 95% interval), and
    fast - exact with its paired within-seed interval (the same episodes) and its across-seed one."""
    rows = []
    if few is None or few.get("episodes") is None or few["episodes"].empty:
        return pd.DataFrame(rows)
    episodes, table = few["episodes"], few["table"].set_index(["shots", "variant"])
    for shots in sorted(episodes["shots"].unique()):
        diff = paired(episodes, shots, "genie-ada-fast", "genie-ada")
        if diff is None:
            continue
        exact, fast = table.loc[(shots, "genie-ada")], table.loc[(shots, "genie-ada-fast")]
        rows.append({"shots": int(shots), "exact": exact["mean"], "exact_ci95": exact["across_ci95"],
                     "fast": fast["mean"], "fast_ci95": fast["across_ci95"], "fast_minus_exact": diff.mean,
                     "paired_ci95": diff.within, "across_ci95": diff.across, "seeds": diff.seeds,
                     "episodes": int(exact["episodes"])})
    return pd.DataFrame(rows)
