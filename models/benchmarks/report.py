"""The benchmarks' results as one self-contained HTML page: tables, plots and images gathered here,
laid out by templates/report.html.j2 with autoescaping (class names and paths are data, not markup)."""
from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from models.benchmarks.ada import ada_agreement
from models.benchmarks.context import compared, seed_groups, worst_group_gap
from models.benchmarks.episodes import Variant, comparisons
from models.benchmarks.few_shot import paired
from models.benchmarks.long_tail import BASELINE, paired_gap
from models.benchmarks.results import Gap, across_ci, half, mean_pm, table, verdict

TEMPLATES = Path(__file__).parent / "templates"


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def image_uri(path: str | Path) -> str:
    """An image file embedded in the page (no link to the file system)."""
    return data_uri(Path(path).read_bytes())


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def figure_uri(fig) -> str:
    """A matplotlib figure as an embedded PNG; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot().close(fig)
    return data_uri(buffer.getvalue())


def said(a: str, b: str, diff: Gap) -> dict:
    """A verdict with its figures, in points."""
    return {"a": a, "b": b, "word": verdict(diff), "mean": diff.mean * 100, "within": diff.within * 100,
            "across": diff.across * 100, "seeds": diff.seeds,
            "per_seed": ", ".join(f"{v * 100:+.1f}" for v in diff.per_seed) if diff.seeds > 1 else ""}


def few_shot_context(r: dict) -> dict:
    facts, scores = r["facts"], r["table"]
    order = facts["variants"]
    wide = pd.DataFrame(index=order)
    for shots, rows in scores.groupby("shots"):
        rows = rows.set_index("variant").reindex(order)
        wide[f"{shots}-shot (% ± 95% CI across seeds)"] = [mean_pm(m, c) for m, c in zip(rows["mean"], rows["across_ci95"])]
        wide[f"{shots}-shot within-seed CI"] = [half(c) for c in rows["ci95"]]
    extra = scores.pivot(index="variant", columns="shots", values="extra_images_per_episode").reindex(order)
    wide["extra images / episode"] = [" / ".join(f"{v:.0f}" for v in row) for row in extra.values]
    verdicts = []
    for shots in facts["shots"]:
        rows = scores[scores["shots"] == shots].set_index("variant")["mean"]
        diffs = [(a, b, paired(r["episodes"], shots, a, b)) for a, b in comparisons(order, rows)]
        verdicts.append({"shots": shots, "said": [said(a, b, d) for a, b, d in diffs if d is not None]})
    return {
        "facts": facts, "accuracy": table(wide.rename_axis("variant").reset_index()), "verdicts": verdicts,
        "seeds": len(facts["generator_seeds"]), "r_plot": r_plot(scores, facts),
        "consistency": consistency(r.get("consistency")), "ada": ada_context(r.get("ada_choices"), facts["ada_ratios"]),
        "grids": grids_context(facts.get("grids", [])), "failures": [
            f | {"source_uri": image_uri(f["source"]), "image_uri": image_uri(f["image"])}
            for f in facts.get("failures", [])],
    }


def r_plot(scores: pd.DataFrame, facts: dict) -> str:
    fig, axes = pyplot().subplots(1, len(facts["shots"]), figsize=(5.5 * len(facts["shots"]), 3.8), squeeze=False)
    for ax, shots in zip(axes[0], facts["shots"]):
        rows = scores[scores["shots"] == shots].set_index("variant")
        rows = rows.assign(bar=rows["across_ci95"].fillna(rows["ci95"]) * 100)
        variants = [Variant.of_label(label) for label in rows.index]
        at_r: dict[str, list] = {}
        for label, v in zip(rows.index, variants):  # a method at several r: a curve; at none: a level
            if v.ratio is not None:
                at_r.setdefault(v.name, []).append((v, label))
        for i, (name, points) in enumerate(at_r.items()):
            shown = rows.loc[[label for _, label in points]]
            ax.errorbar([v.ratio for v, _ in points], shown["mean"] * 100, yerr=shown["bar"], marker="os^vD"[i % 5],
                        linestyle="-" if points[0][0].hard_negative else "none", capsize=3, label=f"{name} at r")
        levels = [(label, v) for label, v in zip(rows.index, variants) if v.ratio is None]
        for i, (label, v) in enumerate(levels):
            ax.axhline(rows.at[label, "mean"] * 100, linestyle=("-", "--", ":", "-.")[i % 4],
                       color="C3" if v.hard_negative else "gray", label=label)
        ax.set_xlabel("noise ratio r")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{facts['ways']}-way {shots}-shot")
        ax.legend(fontsize=7)
    return figure_uri(fig)


def consistency(frame: pd.DataFrame | None) -> dict | None:
    if frame is None or frame.empty:
        return None
    shown = frame.copy()
    for column in ("as label", "as source", "neither"):
        shown[column] = (shown[column] * 100).map("{:.1f}%".format)
    return table(shown)


def ada_context(choices: pd.DataFrame | None, ratios: list[float]) -> dict | None:
    """Exact Ada's choices (plots), and how often fast Ada chose the same r* on the same pairs."""
    if choices is None or choices.empty:
        return None
    agree = None
    if "mode" in choices:
        agree = ada_agreement(choices)
        choices = choices[choices["mode"] == "exact"]
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(11, 4))
    counts = choices["ratio"].value_counts().reindex(ratios, fill_value=0)
    left.bar([str(r) for r in ratios], counts.values)
    left.set_xlabel("r*")
    left.set_ylabel("choices")
    left.set_title(f"r* over {len(choices)} choices")
    means = choices.pivot_table(index="source_class", columns="target", values="ratio", aggfunc="mean")
    shown = right.imshow(means.values, cmap="viridis", vmin=min(ratios), vmax=max(ratios))
    right.set_xticks(range(len(means.columns)), means.columns)
    right.set_yticks(range(len(means.index)), means.index)
    right.set_xlabel("target class")
    right.set_ylabel("source class")
    right.set_title("mean r* per class pair")
    for (i, j), value in np.ndenumerate(means.values):
        if not np.isnan(value):
            right.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(shown, ax=right)
    spread = choices.groupby(["source_class", "target"])["ratio"].agg(["mean", "std", "count"]).reset_index()
    return {"mean_ratio": choices["ratio"].mean(), "plot": figure_uri(fig), "agreement": agree,
            "extremes": table(pd.concat([spread.nsmallest(3, "mean"), spread.nlargest(3, "mean")]).round(3))}


def grids_context(grids: list[dict]) -> dict | None:
    if not grids:
        return None
    return {"ratios": [r for r, _ in grids[0]["candidates"]], "rows": [
        {"source_class": g["source_class"], "target": g["target"], "chosen": g["chosen"],
         "source_uri": image_uri(g["source"]),
         "cells": [{"ratio": r, "uri": image_uri(p), "chosen": r == g["chosen"]} for r, p in g["candidates"]]}
        for g in grids]}


def long_tail_context(r: dict) -> dict:
    facts, scores = r["facts"], r["table"]
    shown = pd.DataFrame({"variant": scores["variant"]})
    for metric, name in (("accuracy", "overall"), ("accuracy.many", "many"), ("accuracy.medium", "medium"),
                         ("accuracy.few", "few"), ("accuracy.worst_group", "worst group")):
        if scores.get(f"{metric}.mean", pd.Series(dtype=float)).isna().all():  # no such class group, or no contexts
            continue
        shown[f"{name} (% ± 95% CI across seeds)"] = [mean_pm(m, s) for m, s in
                                                      zip(scores[f"{metric}.mean"], scores[f"{metric}.across_ci95"])]
        if f"{metric}.ci95" in scores:
            shown[f"{name} within-seed CI"] = [half(c) for c in scores[f"{metric}.ci95"]]
    shown["generated images"] = scores["generated_images.mean"].round(0)
    shown["seeds"] = scores["seeds"]
    fig, ax = pyplot().subplots(figsize=(10, 3.8))
    x = np.arange(len(scores))
    for offset, (metric, label) in zip((-0.2, 0.2), (("accuracy", "overall"), ("accuracy.few", "few-shot classes"))):
        bars = scores[f"{metric}.across_ci95"].fillna(scores[f"{metric}.ci95"])
        ax.bar(x + offset, scores[f"{metric}.mean"] * 100, 0.4, yerr=bars * 100, capsize=3, label=label)
    ax.set_xticks(x, scores["variant"], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.legend()
    gaps = []
    for group, name in ((None, "overall"), ("few", "few-shot classes")):
        for a, b in comparisons([v for v in scores["variant"] if v != BASELINE]):  # the variants, not their start
            diff = paired_gap(r["predictions"], a, b, group)
            if diff is not None:
                gaps.append(said(a, b, diff) | {"group": name})
    return {"facts": facts, "accuracy": table(shown), "gaps": gaps, "plot": figure_uri(fig),
            "consistency": consistency(r.get("consistency")), "context": context_section(r)}


def context_section(r: dict) -> dict | None:
    """Where the data records a context: the worst groups, the verdicts on worst-group accuracy, how often each
    variant's images keep their source's context, and source -> GeNIe edit -> Txt2Img grids."""
    predictions, facts = r["predictions"], r["facts"]
    if "context_group" not in predictions:
        return None
    per_variant = seed_groups(predictions).groupby("variant", sort=False)
    groups = pd.DataFrame({
        "worst group (% ± 95% CI across seeds)": per_variant["worst"].agg(lambda m: mean_pm(m.mean(), across_ci(m))),
        "worst group in each seed": per_variant["group"].agg(", ".join),
        "mean over groups (%)": per_variant["mean"].mean().map("{:.1%}".format)})
    kept = r.get("context")
    if kept is not None and not kept.empty:
        kept = pd.DataFrame({"variant": kept["variant"], "keeps its source's context (%)": [
            mean_pm(m, c) for m, c in zip(kept["kept_context"], kept["kept_context.across_ci95"])],
            "off its label's usual context (%)": [mean_pm(m, c) for m, c in zip(kept["off_usual"],
                                                                                 kept["off_usual.across_ci95"])],
            "images": kept["images"]})
    scores = r["table"]
    verdicts = [said(a, b, gap) for a, b in compared(scores, facts.get("noise_ratio"))
                if (gap := worst_group_gap(predictions, a, b)) is not None]
    return {"groups": table(groups.rename_axis("variant").reset_index()), "kept": table(kept), "verdicts": verdicts,
            "ratio": facts.get("noise_ratio"),
            "grids": [g | {"source_uri": image_uri(g["source"]), "edit_uri": image_uri(g["edit"]),
                           "txt2img_uri": image_uri(g["txt2img"])} for g in facts.get("context_grids", [])]}


def cost_tables(few: dict | None, long: dict | None) -> list[dict]:
    tables = []
    for name, r in (("few-shot", few), ("long-tail", long)):
        if r is None or r.get("cost") is None or r["cost"].empty:
            continue
        cost = r["cost"].groupby("variant", sort=False)[["images", "unet_evals_per_image", "seconds_per_image"]].mean()
        genie = Variant("genie", r["facts"].get("noise_ratio")).label  # GeNIe as configured
        reference = cost["unet_evals_per_image"].get(genie)
        if reference:
            cost[f"UNet evals vs {genie}"] = (cost["unet_evals_per_image"] / reference).map("{:.2f}x".format)
        cost["seconds_per_image"] = cost["seconds_per_image"].map("{:.4f}".format)
        tables.append({"name": name, "table": table(cost.reset_index().round(1))})
    return tables


def ada_benchmark_context(r: dict | None) -> dict | None:
    """`genie benchmark ada`: agreement, cost per kept image, and the few-shot accuracy of both modes."""
    if r is None:
        return None
    cost = r["table"].copy()
    for column in ("evals_vs_genie", "seconds_vs_genie"):
        cost[column] = cost[column].map("{:.2f}x".format)
    few = r.get("few_shot")
    if few is not None and not few.empty:
        few = pd.DataFrame({"shots": few["shots"], "exact (% ± 95% CI across seeds)": [
            mean_pm(m, c) for m, c in zip(few["exact"], few["exact_ci95"])],
            "fast (% ± 95% CI across seeds)": [mean_pm(m, c) for m, c in zip(few["fast"], few["fast_ci95"])],
            "fast − exact (points, paired within seed)": [mean_pm(m, c) for m, c in zip(few["fast_minus_exact"],
                                                                                     few["paired_ci95"])],
            "fast − exact across seeds": [half(c) for c in few["across_ci95"]],
            "generator seeds": few["seeds"], "episodes a seed": few["episodes"]})
    facts = r["facts"]
    agreements = [(name, facts[key]) for name, key in (("fast", "agreement"), ("exact at 2x sampler steps",
                  "exact_2x_steps_agreement")) if facts.get(key)]
    return {"facts": facts, "agreements": agreements, "cost": table(cost.round(4)),
            "crosstab": table(r.get("crosstab")), "few_shot": table(few)}


def adapt_context(r: dict | None) -> dict | None:
    """`genie benchmark adapt`: per adapter kind, its time against a retrain and the judge's shares."""
    if r is None:
        return None
    t = r["table"]
    shown = pd.DataFrame({"adapter": t["adapter"], "prompt of the held-out class": t["prompt"],
                          "seconds": t["seconds"].round(1), "of a retrain": (t["of_retrain"] * 100).map("{:.1f}%".format)})
    for column, name in (("txt2img.held_out", "txt2img: held-out class"), ("txt2img.others", "txt2img: others"),
                         ("genie.held_out", "GeNIe towards it"), ("genie.others", "GeNIe towards others")):
        shown[name] = (t[column] * 100).map("{:.1f}%".format)
    return {"facts": r["facts"], "table": table(shown)}


def render_report(few: dict | None, long: dict | None, ada: dict | None = None, adapt: dict | None = None) -> str:
    """The page for the few-shot, long-tail, Ada and / or adapters results (as `results.load` reads them)."""
    facts = (few or long or ada or adapt)["facts"]
    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
    return environment.get_template("report.html.j2").render(
        title=f"GeNIe on {facts['dataset']}: does it beat the simpler alternatives?", facts=facts,
        runs=[r["facts"] for r in (few, long, ada, adapt) if r], few=few_shot_context(few) if few else None,
        long=long_tail_context(long) if long else None, costs=cost_tables(few, long), ada=ada_benchmark_context(ada),
        adapt=adapt_context(adapt),
    )
