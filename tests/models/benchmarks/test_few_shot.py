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
    verdict,
    with_ada_cost,
)

EPISODE = Episode(1, 0, ("5", "6", "7"), (("s5.png", "5"), ("s6.png", "6"), ("s7.png", "7")), ())


def test_base_and_novel_classes_default_to_halves_and_are_checked():
    assert base_and_novel(list("0123"), None, None) == (["0", "1"], ["2", "3"])
    with pytest.raises(ValueError, match="unknown class '9'"):
        base_and_novel(list("0123"), ("9",), None)
    with pytest.raises(ValueError, match="class '1' is both base and novel"):
        base_and_novel(list("0123"), ("0", "1"), ("1", "2"))


def test_ada_is_planned_as_genie_edits_at_its_ratios():
    plan = variants(("none", "genie", "genie-ada"), (0.5, 0.8), (0.3,))
    edits_of = planned_edits(plan, [EPISODE], (0.5, 0.8), seed=0)
    assert set(edits_of) == {"genie r=0.5", "genie r=0.8"}  # none makes nothing, Ada reuses genie's candidates
    assert all(len(edits) == 3 * 2 for edits in edits_of.values())  # (N-1) * K per class, N = 3
    grouped = by_method(edits_of | {"again": edits_of["genie r=0.5"]})
    assert list(grouped) == ["genie"] and len(grouped["genie"]) == 12  # distinct edits only


def test_summary_paired_difference_and_verdict():
    scores = pd.DataFrame([{"shots": 1, "episode": e, "variant": v, "accuracy": a, "extra_images": 2}
                           for e, (x, y) in enumerate([(0.5, 0.6), (0.6, 0.7), (0.55, 0.66)])
                           for v, a in (("none", x), ("genie r=0.8", y))])
    table = summarise_episodes(scores, [Variant("none"), Variant("genie", 0.8)])
    assert list(table["variant"]) == ["none", "genie r=0.8"] and table.loc[1, "mean"] == pytest.approx(0.6533, abs=1e-4)
    mean, ci = paired(scores, 1, "genie r=0.8", "none")
    assert mean == pytest.approx(0.1033, abs=1e-4) and ci > 0
    assert verdict((mean, ci)) == "better than" and verdict((-mean, ci)) == "worse than"
    assert verdict((0.01, 0.02)) == "not distinguishable from" and paired(scores, 1, "txt2img", "none") is None


def test_ada_costs_the_sum_of_its_candidates():
    cost = pd.DataFrame({"variant": ["genie r=0.5", "genie r=0.8", "txt2img"], "images": [4, 4, 4],
                         "unet_evals_per_image": [24.0, 40.0, 50.0], "seconds_per_image": [0.1, 0.2, 0.3]})
    choices = pd.DataFrame({"source": ["a", "a", "b"], "target": ["5", "5", "6"]})
    ada = with_ada_cost(cost, choices, (0.5, 0.8)).set_index("variant").loc["genie-ada"]
    assert (ada["images"], ada["unet_evals_per_image"], ada["seconds_per_image"]) == (2, 64.0, pytest.approx(0.3))
