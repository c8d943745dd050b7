"""The few-shot benchmark's planning and analyses: which edits each variant needs, the summary
table, paired differences, Ada's grids, failure cases and the cost of Ada."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from models.benchmarks.episodes import Episode, Variant, episode_edits
from models.benchmarks.results import IMAGE_COLUMNS, Gap, across_ci, gap_between, image_rows, mean_ci, within_ci
from models.editing import Edit


def base_and_novel(classes: list[str], base: tuple | None, novel: tuple | None) -> tuple[list[str], list[str]]:
    """The extractor's classes and the episodes' classes: configured, else the first half and the rest."""
    base = list(base) if base else classes[: len(classes) // 2]
    novel = list(novel) if novel else [c for c in classes if c not in base]
    unknown = sorted(set(base + novel) - set(classes))
    if unknown:
        raise ValueError(f"benchmark.few_shot: unknown class {unknown[0]!r} (classes: {', '.join(classes)})")
    if set(base) & set(novel):
        raise ValueError(f"benchmark.few_shot: class {sorted(set(base) & set(novel))[0]!r} is both base and novel")
    return base, novel


def pools(manifest: pd.DataFrame, root: Path, classes: list[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Support images come from train, queries from val + test: image paths per class."""
    def pool(splits: list[str]) -> dict[str, list[str]]:
        rows = manifest[manifest["split"].isin(splits)]
        return {c: [str(Path(root) / p) for p in rows.loc[rows["label"] == c, "path"]] for c in classes}

    return pool(["train"]), pool(["val", "test"])


def planned_edits(plan: list[Variant], episodes: list[Episode], ada_ratios: tuple[float, ...],
                  seed: int) -> dict[str, list[Edit]]:
    """The edits each generating variant needs over all episodes. GeNIe-Ada's candidates are GeNIe's
    edits at the Ada ratios (same pair, same seed, same image), so they are planned as those; fast
    Ada also needs its one-step probes of them (method ada-probe, listed as 'ada-probe r=...')."""
    sweep = [v for v in plan if v.method != "genie-ada"]
    if any(v.method == "genie-ada" for v in plan):
        sweep += [Variant("genie", r) for r in ada_ratios]
    if any(v.method == "genie-ada" and v.mode == "fast" for v in plan):
        sweep += [Variant("ada-probe", r) for r in ada_ratios]
    edits_of = {v.label: [edit for e in episodes for edit in episode_edits(e, v, seed)] for v in dict.fromkeys(sweep)}
    return {label: edits for label, edits in edits_of.items() if edits}  # none and traditional generate nothing


def by_method(edits_of: dict[str, list[Edit]]) -> dict[str, list[Edit]]:
    """Distinct edits grouped by method: each method's images live in a folder of their own."""
    grouped: dict[str, dict[Edit, None]] = {}
    for edit in (e for edits in edits_of.values() for e in edits):
        grouped.setdefault(edit.method, {})[edit] = None
    return {method: list(edits) for method, edits in grouped.items()}


def summarise_episodes(scores: pd.DataFrame, plan: list[Variant]) -> pd.DataFrame:
    """Per (shots, variant), in the plan's order: the mean over seeds of each seed's mean accuracy, its
    within-seed 95% interval (episodes) and its across-seed one (the seeds' means)."""
    rows = []
    for (shots, label), group in scores.groupby(["shots", "variant"], sort=False):
        per_seed = [mean_ci(g["accuracy"]) for _, g in group.groupby("seed")]
        means = [m for m, _ in per_seed]
        rows.append({"shots": shots, "variant": label, "mean": np.mean(means), "ci95": within_ci([c for _, c in per_seed]),
                     "across_ci95": across_ci(means), "seeds": len(per_seed),
                     "episodes": len(group) // len(per_seed), "extra_images_per_episode": group["extra_images"].mean()})
    order = {v.label: i for i, v in enumerate(plan)}
    return pd.DataFrame(rows).sort_values(["shots", "variant"], key=lambda c: c.map(order) if c.name == "variant"
                                          else c).reset_index(drop=True)


def paired(episodes: pd.DataFrame, shots: int, a: str, b: str) -> Gap | None:
    """accuracy(a) - accuracy(b) over the same episodes of each seed, with both intervals."""
    return gap_between(episodes[episodes["shots"] == shots], a, b, "episode", "accuracy")


def generated_images(made: dict[Edit, str], edits_of: dict[str, list[Edit]], choices: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct generated image a variant uses (Ada: its chosen candidates)."""
    rows = [row for label, edits in edits_of.items() if not label.startswith("ada-probe")
            for row in image_rows(made, label, edits)]
    if len(choices):
        picked = choices.drop_duplicates(["mode", "image"])
        rows += [{"variant": ADA_VARIANT[r.mode], "image": r.image, "label": r.target, "source_class": r.source_class,
                  "source": r.source, "ratio": r.ratio} for r in picked.itertuples()]
    return pd.DataFrame(rows, columns=IMAGE_COLUMNS)


ADA_VARIANT = {"exact": "genie-ada", "fast": "genie-ada-fast"}


def with_ada_cost(cost: pd.DataFrame, choices: pd.DataFrame, ada_ratios: tuple[float, ...]) -> pd.DataFrame:
    """GeNIe-Ada's rows. Exact: every candidate denoised in full, then one kept (the sum of the candidates).
    Fast: every candidate probed, then only r* denoised (the probes' sum plus GeNIe at each chosen r*).
    The probes' own rows go: they are not images a classifier sees."""
    if cost.empty or choices.empty:
        return cost
    per = cost.set_index("variant")[["unet_evals_per_image", "seconds_per_image"]]
    rows = []
    for mode, chosen in choices.drop_duplicates(["mode", "source", "target"]).groupby("mode", sort=False):
        looks = per.loc[[Variant("genie" if mode == "exact" else "ada-probe", r).label for r in ada_ratios]].sum()
        kept = per.loc[[Variant("genie", r).label for r in chosen["ratio"]]].mean() if mode == "fast" else 0
        rows.append({"variant": ADA_VARIANT[mode], "images": len(chosen), **(looks + kept).to_dict()})
    return pd.concat([cost[~cost["variant"].str.startswith("ada-probe")], pd.DataFrame(rows)], ignore_index=True)


def ada_grids(choices: pd.DataFrame, made: dict[Edit, str], ratios: tuple[float, ...], seed: int,
              pairs: int = 10) -> list[dict]:
    """Source -> candidates across r -> Ada's choice, for one source per (source class, target) pair."""
    if choices.empty:
        return []
    grids = []
    exact = choices[choices["mode"] == "exact"] if (choices["mode"] == "exact").any() else choices
    for row in exact.drop_duplicates(["source_class", "target"]).head(pairs).itertuples():
        candidates = [made[Edit.make(row.source, row.source_class, row.target, "genie", r, seed)] for r in ratios]
        grids.append({"source": row.source, "source_class": row.source_class, "target": row.target,
                      "candidates": list(zip(ratios, candidates)), "chosen": row.ratio, "jumps": row.jumps})
    return grids


def failure_cases(judged: pd.DataFrame, seed: int, count: int = 24) -> list[dict]:
    """GeNIe edits the real-data judge sees as the source class or as neither class."""
    if judged.empty:
        return []
    failed = judged[judged["variant"].str.startswith("genie") & (judged["outcome"] != "as label")]
    failed = failed.drop_duplicates("image").sample(min(count, len(failed)), random_state=seed) if len(failed) else failed
    return failed[["image", "source", "source_class", "label", "variant", "judged", "outcome"]].to_dict("records")
