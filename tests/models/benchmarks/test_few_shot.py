"""The few-shot benchmark's planning and analyses, on small hand-made episodes and scores."""
import pandas as pd
import pytest

from models.benchmarks.episodes import Episode, Variant, variants
from models.benchmarks.few_shot import (
    base_and_novel,
    by_method,
    paired,
    planned_edits,
    summarise_episodes,
    with_ada_cost,
)
from models.benchmarks.results import Gap, verdict
from models.config import GenieConfig

GENIE = GenieConfig(ada_ratios=(0.5, 0.8), img2img_ratios=(0.3,))

EPISODE = Episode(1, 0, ("5", "6", "7"), (("s5.png", "5"), ("s6.png", "6"), ("s7.png", "7")), ())


def test_base_and_novel_classes_default_to_halves_and_are_checked():
    assert base_and_novel(list("0123"), None, None) == (["0", "1"], ["2", "3"])
    with pytest.raises(ValueError, match="unknown class '9'"):
        base_and_novel(list("0123"), ("9",), None)
    with pytest.raises(ValueError, match="class '1' is both base and novel"):
        base_and_novel(list("0123"), ("0", "1"), ("1", "2"))


def test_ada_is_planned_as_genie_edits_at_its_ratios():
    plan = variants(("none", "genie", "genie-ada"), GENIE, sweep=True)
    edits_of = planned_edits(plan, [EPISODE], (0.5, 0.8), seed=0)
    assert set(edits_of) == {"genie r=0.5", "genie r=0.8"}  # none makes nothing, Ada reuses genie's candidates
    assert all(len(edits) == 3 * 2 for edits in edits_of.values())  # (N-1) * K per class, N = 3
    grouped = by_method(edits_of | {"again": edits_of["genie r=0.5"]})
    assert list(grouped) == ["genie"] and len(grouped["genie"]) == 12  # distinct edits only


def test_summary_paired_difference_and_verdict():
    scores = pd.DataFrame([{"seed": 0, "shots": 1, "episode": e, "variant": v, "accuracy": a, "extra_images": 2}
                           for e, (x, y) in enumerate([(0.5, 0.6), (0.6, 0.7), (0.55, 0.66)])
                           for v, a in (("none", x), ("genie r=0.8", y))])
    table = summarise_episodes(scores, [Variant("none"), Variant("genie", 0.8)])
    assert list(table["variant"]) == ["none", "genie r=0.8"] and table.loc[1, "mean"] == pytest.approx(0.6533, abs=1e-4)
    diff = paired(scores, 1, "genie r=0.8", "none")
    assert diff.mean == pytest.approx(0.1033, abs=1e-4) and diff.within > 0 and diff.seeds == 1
    assert verdict(diff) == "better than" and verdict(Gap(-diff.mean, diff.within, diff.across, 1)) == "worse than"
    assert verdict(Gap(0.01, 0.02, float("nan"), 1)) == "not distinguishable from"
    assert paired(scores, 1, "txt2img", "none") is None
    # with several seeds the verdict rests on the across-seed interval, however narrow the within-seed one
    assert verdict(Gap(0.05, 0.01, 0.08, 3)) == "not distinguishable from"
    assert verdict(Gap(0.05, 0.01, 0.04, 3)) == "better than"


def test_fast_ada_also_plans_one_probe_per_candidate():
    plan = variants(("genie-ada", "genie-ada-fast"), GENIE, sweep=True)
    edits_of = planned_edits(plan, [EPISODE], (0.5, 0.8), seed=0)
    assert set(edits_of) == {"genie r=0.5", "genie r=0.8", "ada-probe r=0.5", "ada-probe r=0.8"}
    probe, genie = edits_of["ada-probe r=0.5"][0], edits_of["genie r=0.5"][0]
    assert (probe.source, probe.label, probe.seed) == (genie.source, genie.label, genie.seed)  # the same noise


def test_ada_costs_its_candidates_or_its_probes_plus_r_star():
    cost = pd.DataFrame({"variant": ["genie r=0.5", "genie r=0.8", "txt2img", "ada-probe r=0.5", "ada-probe r=0.8"],
                         "images": [4] * 5, "unet_evals_per_image": [24.0, 40.0, 50.0, 2.0, 2.0],
                         "seconds_per_image": [0.1, 0.2, 0.3, 0.01, 0.01]})
    choices = pd.DataFrame({"mode": ["exact"] * 3 + ["fast"] * 2, "source": ["a", "a", "b", "a", "b"],
                            "target": ["5", "5", "6", "5", "6"], "ratio": [0.5, 0.5, 0.8, 0.5, 0.8]})
    rows = with_ada_cost(cost, choices, (0.5, 0.8)).set_index("variant")
    assert not rows.index.str.startswith("ada-probe").any()  # probes are no images a classifier sees
    exact, fast = rows.loc["genie-ada"], rows.loc["genie-ada-fast"]
    assert (exact["images"], exact["unet_evals_per_image"], exact["seconds_per_image"]) == (2, 64.0, pytest.approx(0.3))
    assert (fast["images"], fast["unet_evals_per_image"]) == (2, 2 * 2.0 + (24.0 + 40.0) / 2)
    assert fast["seconds_per_image"] == pytest.approx(0.02 + 0.15)


def test_within_and_across_seed_intervals_of_a_paired_difference():
    episodes = pd.DataFrame({"seed": [0] * 4 + [1] * 4, "shots": 1, "episode": [0, 1] * 4,
                             "variant": (["a"] * 2 + ["b"] * 2) * 2, "accuracy": [0.6, 0.8, 0.5, 0.5,
                                                                                   0.9, 0.7, 0.5, 0.7]})
    diff = paired(episodes, 1, "a", "b")
    assert diff.mean == pytest.approx(0.2) and diff.seeds == 2
    # each seed's paired interval (episode gaps 0.1, 0.3 and 0.4, 0.0), combined for the mean of the two
    assert diff.within == pytest.approx(((1.96 * 0.1 / 2 ** 0.5) ** 2 + (1.96 * 0.2 / 2 ** 0.5) ** 2) ** 0.5 / 2)
    assert diff.across == 0  # both seeds gain 0.2: the generators do not move this difference
    table = summarise_episodes(episodes.assign(extra_images=0), [Variant("a"), Variant("b")]).set_index("variant")
    assert table.loc["a", "mean"] == pytest.approx(0.75) and table.loc["a", "seeds"] == 2
    assert table.loc["a", "across_ci95"] == pytest.approx(12.706 * 0.0707 / 2 ** 0.5, rel=1e-3)
    assert table.loc["a", "episodes"] == 2
