"""GeNIe-Ada, fast against exact: held-out pairs, how often the two pick the same r*, what a kept image costs
each way (and GeNIe, the yardstick), and where each mode sits against fixed r on Ada's trade-off."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from models.benchmarks.few_shot import paired
from models.dataset import load_rgb, seeded_rank
from models.edit_folder import rows_of
from models.editing import Edit, edit_seed

# (row label, method, Ada mode, sampler steps x) of the cost table, GeNIe first: the others are measured against
# it. Exact Ada at twice the sampler steps tells how far exact's own choice moves when only the sampler changes.
METHODS = (("genie", "genie", None, 1), ("genie-ada exact", "genie-ada", "exact", 1),
           ("genie-ada fast", "genie-ada", "fast", 1), ("genie-ada exact 2x steps", "genie-ada", "exact", 2))


def held_out_pairs(manifest: pd.DataFrame, root: Path, classes: list[str], count: int, seed: int
                   ) -> list[tuple[str, str, str]]:
    """(source image, source class, target) for `count` pairs of test images, which neither the generator nor
    Ada's extractor trained on: each test image with a seeded target among the other classes, then (past one pair
    per image) each with a second target, and so on."""
    test = manifest[manifest["split"] == "test"]
    rows = sorted(test.itertuples(index=False), key=lambda row: seeded_rank(f"ada:{seed}", row.path))
    targets = []
    for row in rows:
        others = [c for c in classes if c != row.label]
        first = others[edit_seed(seed, row.path, "ada") % len(others)]
        rest = sorted((c for c in others if c != first), key=lambda c: seeded_rank(f"ada:{seed}:{row.path}", c))
        targets.append([first, *rest])
    rounds = max((len(t) for t in targets), default=0)
    pairs = [(str(Path(root) / row.path), row.label, t[j]) for j in range(rounds) for row, t in zip(rows, targets)
             if j < len(t)]
    return pairs[:count]


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


def choice_rows(made: dict[Edit, str], edits: list[Edit], mode: str) -> list[dict]:
    """The r* each kept Ada edit chose (read back from its folder's manifest), one row per (source, target)."""
    kept = [e for e in edits if e in made]
    rows = rows_of([made[e] for e in kept])
    return [{"mode": mode, "source": e.source, "target": e.label, "ratio": rows.at[Path(made[e]).stem, "ratio"]}
            for e in kept]


def metrics(facts: dict, cost: pd.DataFrame, trade_off: pd.DataFrame) -> dict[str, float]:
    """The benchmark's figures as MLflow metrics: agreement, evaluations against GeNIe, lift over fixed r."""
    out = {f"ada.{k}": v for k, v in facts["agreement"].items()}
    out |= {f"ada.exact_2x_steps.{k}": v for k, v in facts["exact_2x_steps_agreement"].items()}
    out |= {f"ada.evals_vs_genie.{row.variant.replace(' ', '_')}": row.evals_vs_genie for row in cost.itertuples()}
    return out | {f"ada.lift.{row.variant.replace(' ', '_')}": row.lift
                  for row in trade_off.dropna(subset="lift").itertuples()}


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


def distance(source: str, image: str) -> float:
    """Root-mean-square pixel difference in [0, 1] between an edit and its source (resized to the edit's size
    as the engine resizes it): how much of the source an edit keeps, lower is more."""
    edit = np.asarray(load_rgb(image), dtype=np.float64) / 255
    size = edit.shape[1], edit.shape[0]
    original = np.asarray(load_rgb(source).resize(size, Image.Resampling.BICUBIC), dtype=np.float64) / 255
    return float(np.sqrt(((edit - original) ** 2).mean()))


def candidate_rows(edits: list[Edit], made: dict[Edit, str]) -> pd.DataFrame:
    """GeNIe at every Ada candidate r of each held-out pair: its image, label and distance to the source."""
    return pd.DataFrame([{"source": e.source, "source_class": e.source_class, "label": e.label, "ratio": e.ratio,
                          "image": made[e], "distance": distance(e.source, made[e])} for e in edits if e in made])


def trade_off(candidates: pd.DataFrame, choices: pd.DataFrame, modes: tuple[str, ...] = ("exact", "fast"),
              resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """What Ada is for: the hardest negative that still shows the target. Fixed r at each candidate gives a curve
    of (distance to the source, share judged the target); each mode's pick of r* per pair gives a point, and its
    lift is its share minus the curve's at its own distance (linear between the fixed-r points). `candidates`:
    source, label, ratio, distance, target_judged per (pair, r); `choices`: source, target, mode, ratio. Every
    figure is over the pairs that have all candidates and a pick of every mode, with 95% intervals from a paired
    bootstrap over pairs (the same resample for the curve and every mode), and each mode's lift minus exact's."""
    judged = candidates.pivot_table(index=["source", "label"], columns="ratio", values="target_judged", aggfunc="first")
    far = candidates.pivot_table(index=["source", "label"], columns="ratio", values="distance", aggfunc="first")
    picks = choices.pivot_table(index=["source", "target"], columns="mode", values="ratio", aggfunc="first")
    picks = picks.rename_axis(index=["source", "label"])[[m for m in modes if m in picks.columns]]
    both = judged.dropna().index.intersection(picks.dropna().index)
    ratios = list(judged.columns)
    hit, dist = judged.loc[both].to_numpy(float), far.loc[both].to_numpy(float)
    index = {m: np.searchsorted(ratios, picks.loc[both, m].to_numpy()) for m in picks.columns}
    rows_of_pairs = np.arange(len(both))

    def figures(weights: np.ndarray) -> dict:
        share, mean = weights @ hit / weights.sum(), weights @ dist / weights.sum()
        order = np.argsort(mean)
        out = {"curve": (share, mean)}
        for mode, k in index.items():
            s, d = weights @ hit[rows_of_pairs, k] / weights.sum(), weights @ dist[rows_of_pairs, k] / weights.sum()
            out[mode] = (s, d, s - np.interp(d, mean[order], share[order]))
        return out

    point = figures(np.ones(len(both)))
    rng = np.random.default_rng(seed)
    draws = [figures(rng.multinomial(len(both), np.full(len(both), 1 / len(both))).astype(float))
             for _ in range(resamples)] if len(both) else []

    def interval(values: list[float]) -> tuple[float, float]:
        return tuple(np.percentile(values, [2.5, 97.5])) if values else (np.nan, np.nan)

    rows = [{"variant": f"genie r={r}", "pairs": len(both), "judged_target": point["curve"][0][i],
             "distance": point["curve"][1][i]} for i, r in enumerate(ratios)]
    for mode in index:
        low, high = interval([d[mode][2] for d in draws])
        rows.append({"variant": f"genie-ada {mode}", "pairs": len(both), "judged_target": point[mode][0],
                     "distance": point[mode][1], "lift": point[mode][2], "lift_low": low, "lift_high": high})
        if mode != "exact" and "exact" in index:
            low, high = interval([d[mode][2] - d["exact"][2] for d in draws])
            rows.append({"variant": f"{mode} - exact", "pairs": len(both), "lift": point[mode][2] - point["exact"][2],
                         "lift_low": low, "lift_high": high})
    return pd.DataFrame(rows)


def default_mode(trade_off: pd.DataFrame, cost: pd.DataFrame) -> tuple[str, str]:
    """The Ada mode the trade-off supports as the default, and why: fast when it sits on exact's trade-off (its lift
    minus exact's has a paired interval reaching 0 or above) at <= 2x GeNIe's UNet evaluations; else exact."""
    rows, evals = trade_off.set_index("variant"), cost.set_index("variant")["evals_vs_genie"]
    if "fast - exact" not in rows.index or pd.isna(rows.at["fast - exact", "lift_high"]):
        return "exact", "no paired figures for fast and exact"
    gap, fast_evals = rows.loc["fast - exact"], evals.get("genie-ada fast", np.nan)
    said = (f"fast - exact lift {gap['lift'] * 100:+.1f} points (95% {gap['lift_low'] * 100:+.1f}.."
            f"{gap['lift_high'] * 100:+.1f}, paired over {int(gap['pairs'])} pairs) at {fast_evals:.2f}x GeNIe's UNet "
            f"evaluations (exact {evals.get('genie-ada exact', np.nan):.2f}x)")
    if gap["lift_high"] >= 0 and fast_evals <= 2:
        return "fast", f"fast sits on exact's trade-off: {said}"
    return "exact", f"fast falls short of exact's trade-off: {said}" if gap["lift_high"] < 0 else \
        f"fast costs more than 2x GeNIe: {said}"
