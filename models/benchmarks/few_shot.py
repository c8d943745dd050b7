"""The few-shot benchmark's planning and analyses: which edits each variant needs, the summary
table, paired differences, Ada's grids, failure cases and the cost of Ada."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.benchmarks.episodes import Episode, Variant, episode_edits
from models.benchmarks.results import IMAGE_COLUMNS, image_rows, mean_ci
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
    edits at the Ada ratios (same pair, same seed, same image), so they are planned as those."""
    sweep = [v for v in plan if v.method != "genie-ada"]
    if any(v.method == "genie-ada" for v in plan):
        sweep += [Variant("genie", r) for r in ada_ratios]
    edits_of = {v.label: [edit for e in episodes for edit in episode_edits(e, v, seed)] for v in dict.fromkeys(sweep)}
    return {label: edits for label, edits in edits_of.items() if edits}  # none and traditional generate nothing


def by_method(edits_of: dict[str, list[Edit]]) -> dict[str, list[Edit]]:
    """Distinct edits grouped by method: each method's images live in a folder of their own."""
    grouped: dict[str, dict[Edit, None]] = {}
    for edit in (e for edits in edits_of.values() for e in edits):
        grouped.setdefault(edit.method, {})[edit] = None
    return {method: list(edits) for method, edits in grouped.items()}


def summarise_episodes(scores: pd.DataFrame, plan: list[Variant]) -> pd.DataFrame:
    """Mean accuracy and 95% interval per (shots, variant), in the plan's order."""
    rows = []
    for (shots, label), group in scores.groupby(["shots", "variant"], sort=False):
        mean, ci = mean_ci(group["accuracy"])
        rows.append({"shots": shots, "variant": label, "mean": mean, "ci95": ci, "episodes": len(group),
                     "extra_images_per_episode": group["extra_images"].mean()})
    order = {v.label: i for i, v in enumerate(plan)}
    return pd.DataFrame(rows).sort_values(["shots", "variant"], key=lambda c: c.map(order) if c.name == "variant"
                                          else c).reset_index(drop=True)


def paired(episodes: pd.DataFrame, shots: int, a: str, b: str) -> tuple[float, float] | None:
    """Mean and 95% half-width of accuracy(a) - accuracy(b) over the same episodes."""
    rows = episodes[episodes["shots"] == shots].pivot(index="episode", columns="variant", values="accuracy")
    if a not in rows or b not in rows:
        return None
    return mean_ci(rows[a] - rows[b])


def verdict(diff: tuple[float, float]) -> str:
    """'better than', 'worse than' or 'not distinguishable from', by the 95% interval of a difference."""
    mean, ci = diff
    return "better than" if mean - ci > 0 else "worse than" if mean + ci < 0 else "not distinguishable from"


def generated_images(made: dict[Edit, str], edits_of: dict[str, list[Edit]], choices: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct generated image a variant uses (Ada: its chosen candidates)."""
    rows = [row for label, edits in edits_of.items() for row in image_rows(made, label, edits)]
    if len(choices):
        picked = choices.drop_duplicates("image")
        rows += [{"variant": "genie-ada", "image": r.image, "label": r.target, "source_class": r.source_class,
                  "source": r.source, "ratio": r.ratio} for r in picked.itertuples()]
    return pd.DataFrame(rows, columns=IMAGE_COLUMNS)


def with_ada_cost(cost: pd.DataFrame, choices: pd.DataFrame, ada_ratios: tuple[float, ...]) -> pd.DataFrame:
    """Add GeNIe-Ada's row: every candidate denoised in full, then one kept, so the sum of the candidates."""
    if cost.empty:
        return cost
    sweep = cost[cost["variant"].isin([Variant("genie", r).label for r in ada_ratios])]
    kept = len(choices.drop_duplicates(["source", "target"])) if len(choices) else 0
    return pd.concat([cost, pd.DataFrame([{"variant": "genie-ada", "images": kept,
                                           "unet_evals_per_image": sweep["unet_evals_per_image"].sum(),
                                           "seconds_per_image": sweep["seconds_per_image"].sum()}])],
                     ignore_index=True)


def ada_grids(choices: pd.DataFrame, made: dict[Edit, str], ratios: tuple[float, ...], seed: int,
              pairs: int = 10) -> list[dict]:
    """Source -> candidates across r -> Ada's choice, for one source per (source class, target) pair."""
    if choices.empty:
        return []
    grids = []
    for row in choices.drop_duplicates(["source_class", "target"]).head(pairs).itertuples():
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
