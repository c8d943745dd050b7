"""The long-tail benchmark: per-seed settings, equal budgets per variant, the summary over seeds."""
import pandas as pd
import pytest

from models.benchmarks.episodes import Variant
from models.benchmarks.long_tail import kept_images, long_tail_edits, paired_gap, summarise_seeds
from models.benchmarks.results import verdict
from models.config import Settings

MANIFEST = pd.DataFrame({"path": ["5/a.png", "5/b.png", "6/c.png", "7/d.png"], "label": ["5", "5", "6", "7"],
                         "split": "train"})
SELECTION = pd.DataFrame({"target": ["5", "5", "5", "6"], "source_class": ["6", "7", "6", "5"],
                          "source": ["data/6/c.png", "data/7/d.png", "data/6/e.png", "data/5/a.png"]})


def test_every_method_gets_the_selection_budget_per_class():
    settings = Settings(dataset={"path": "data"})
    budget = SELECTION.groupby("target").size().to_dict()
    for variant in (Variant("genie", 0.8), Variant("txt2img"), Variant("img2img", 0.3), Variant("genie-ada", filter=True)):
        edits = long_tail_edits(settings, variant, SELECTION, MANIFEST)
        assert pd.Series([e.label for e in edits]).value_counts().to_dict() == budget, variant
    img2img = long_tail_edits(settings, Variant("img2img", 0.3), SELECTION, MANIFEST)
    assert {e.source_class for e in img2img} == {"5", "6"} and {e.ratio for e in img2img} == {0.3}  # own images
    assert long_tail_edits(settings, Variant("real"), SELECTION, MANIFEST) == []


def predictions(seed: int, variant: str, correct: list[int]) -> pd.DataFrame:
    return pd.DataFrame({"seed": seed, "variant": variant, "image": range(len(correct)),
                         "group": ["few", "few", "many", "many"], "correct": correct})


PREDICTIONS = pd.concat([predictions(0, "real", [0, 1, 1, 1]), predictions(0, "genie", [1, 1, 1, 1]),
                         predictions(1, "real", [0, 0, 1, 1]), predictions(1, "genie", [1, 0, 1, 0])])


def test_summary_over_seeds_gives_both_intervals():
    per_seed = pd.DataFrame({"seed": [0, 1], "variant": ["real", "real"], "generated_images": [0, 0],
                             "accuracy": [0.75, 0.5], "accuracy.many": [1.0, 1.0], "accuracy.medium": [0.9, 0.9],
                             "accuracy.few": [0.5, 0.0]})
    row = summarise_seeds(per_seed, PREDICTIONS).iloc[0]
    assert row["accuracy.mean"] == pytest.approx(0.625) and row["seeds"] == 2
    # across seeds: t(0.975, 1) * sample std / sqrt(2); within: each seed's 1.96 * std / sqrt(n), combined
    assert row["accuracy.few.across_ci95"] == pytest.approx(12.706 * 0.3536 / 2 ** 0.5, rel=1e-3)
    within = [1.96 * 0.4330 / 2, 1.96 * 0.5 / 2]
    assert row["accuracy.ci95"] == pytest.approx((within[0] ** 2 + within[1] ** 2) ** 0.5 / 2, rel=1e-3)
    one = summarise_seeds(per_seed[per_seed["seed"] == 0], PREDICTIONS[PREDICTIONS["seed"] == 0]).iloc[0]
    assert pd.isna(one["accuracy.across_ci95"]) and one["accuracy.ci95"] > 0  # one seed: no across-seed interval


def test_gaps_are_paired_over_the_same_test_images_of_each_seed():
    overall = paired_gap(PREDICTIONS, "genie", "real")
    assert overall.mean == pytest.approx((0.25 + 0.0) / 2) and overall.seeds == 2
    few = paired_gap(PREDICTIONS, "genie", "real", "few")
    assert few.mean == pytest.approx(0.5) and few.within > 0
    assert few.across == 0 and verdict(few) == "better than"  # both seeds gain the same
    assert paired_gap(PREDICTIONS, "genie", "txt2img") is None


def test_a_filtered_variant_keeps_only_what_the_judge_finds_consistent():
    verdicts = pd.DataFrame({"image": ["a", "b", "c"], "p_label": [0.9, 0.4, 0.6]})
    assert kept_images(verdicts, Variant("genie", 0.8), 0.5).equals(verdicts)
    assert list(kept_images(verdicts, Variant("genie", 0.8, filter=True), 0.5)["image"]) == ["a", "c"]
    assert kept_images(verdicts.iloc[:0], Variant("genie", 0.8, filter=True), 0.5).empty


def test_the_context_verdicts_follow_the_reports_one_rule_with_the_configured_r_kept():
    from models.benchmarks.context import compared
    from models.benchmarks.episodes import comparisons

    labels = ["baseline (no fine-tuning)", "real", "img2img r=0.3", "txt2img", *(f"genie r={r}" for r in (0.5, 0.6, 0.8)),
              "genie-ada", "genie-ada+filter"]
    worst = [0.06, 0.06, 0.10, 0.10, 0.10, 0.133, 0.06, 0.073, 0.087]
    table = pd.DataFrame({"variant": labels, "accuracy.worst_group.mean": worst, "accuracy.mean": 0.7})
    pairs = compared(table, 0.8)
    for pair in [("genie r=0.8", "txt2img"), ("genie r=0.6", "txt2img"), ("genie-ada", "txt2img"),
                 ("genie-ada", "genie r=0.8"), ("genie-ada", "genie r=0.6"), ("genie-ada+filter", "genie-ada")]:
        assert pair in pairs  # the docs' five (docs/context.md), and the filter against its method
    assert not {a for a, _ in pairs} & {"genie r=0.5", "baseline (no fine-tuning)"}
    assert set(pairs) <= set(comparisons(labels[1:]))  # the report's pairs, the sweep narrowed to the two r
