"""GeNIe-Ada's benchmark: held-out pairs, agreement of fast with exact, costs against GeNIe."""
from pathlib import Path

import pandas as pd
import pytest

from models.benchmarks.ada import ada_agreement, cost_table, few_shot_rows, held_out_pairs
from models.benchmarks.episodes import Variant
from models.benchmarks.few_shot import summarise_episodes


def test_pairs_come_from_the_test_split_with_another_class_as_target():
    manifest = pd.DataFrame({"path": [f"{c}/{i}.png" for c in "012" for i in range(4)],
                             "label": [c for c in "012" for _ in range(4)], "split": ["train", "test"] * 6})
    pairs = held_out_pairs(manifest, Path("data"), list("012"), 5, seed=0)
    assert len(pairs) == 5 and len({p for p, _, _ in pairs}) == 5
    test = {f"data/{p}" for p in manifest.loc[manifest["split"] == "test", "path"]}
    assert all(source in test and source_class != target for source, source_class, target in pairs)
    assert held_out_pairs(manifest, Path("data"), list("012"), 5, seed=0) == pairs
    more = held_out_pairs(manifest, Path("data"), list("012"), 99, seed=0)  # then a second target per test image
    assert len(more) == 12 and more[:5] == pairs and len(set(more)) == 12
    assert all(source in test and source_class != target for source, source_class, target in more)


def test_a_mode_above_the_fixed_r_curve_has_a_positive_lift():
    """Fixed r: (distance, share judged the target) = (0.2, 0), (0.4, 0.5), (0.6, 1). Exact stops at 0.7 where the
    target already shows (half the pairs), fast always goes to 0.9: exact keeps more of the source for the same
    share, 25 points above the curve at its distance; fast sits on it."""
    from models.benchmarks.ada import trade_off

    pairs = [(f"s{i}", "1") for i in range(40)]
    shows = {0.5: lambda i: False, 0.7: lambda i: i % 2 == 0, 0.9: lambda i: True}
    candidates = pd.DataFrame([{"source": s, "label": t, "ratio": r, "distance": d, "target_judged": shows[r](i)}
                               for i, (s, t) in enumerate(pairs) for r, d in ((0.5, 0.2), (0.7, 0.4), (0.9, 0.6))])
    choices = pd.DataFrame([{"source": s, "target": t, "mode": m, "ratio": r} for i, (s, t) in enumerate(pairs)
                            for m, r in (("exact", 0.7 if i % 2 == 0 else 0.9), ("fast", 0.9))])
    table = trade_off(candidates, choices, resamples=200).set_index("variant")
    assert tuple(table.loc["genie r=0.7", ["judged_target", "distance"]]) == pytest.approx((0.5, 0.4))
    exact, fast, gap = table.loc["genie-ada exact"], table.loc["genie-ada fast"], table.loc["fast - exact"]
    assert (exact["judged_target"], exact["distance"], exact["lift"]) == pytest.approx((1.0, 0.5, 0.25))
    assert (fast["judged_target"], fast["lift"]) == pytest.approx((1.0, 0.0)) and gap["lift"] == pytest.approx(-0.25)
    assert exact["lift_low"] > 0 and gap["lift_high"] < 0  # the paired intervals tell them apart


def test_agreement_counts_same_and_near_choices_on_the_same_pairs():
    exact = [0.5, 0.6, 0.7, 0.9]
    fast = [0.5, 0.7, 0.7, 0.6]
    choices = pd.DataFrame([{"mode": m, "source": f"s{i}", "target": "1", "ratio": r}
                            for m, ratios in (("exact", exact), ("fast", fast)) for i, r in enumerate(ratios)])
    agree = ada_agreement(choices, keys=("source", "target"))
    assert (agree["pairs"], agree["same"], agree["within_0.1"]) == (4, 0.5, 0.75)
    assert agree["crosstab"].set_index("exact r*").loc[0.9, "0.6"] == 1
    assert ada_agreement(choices[choices["mode"] == "exact"], keys=("source", "target")) is None


def test_costs_are_put_against_genie_and_few_shot_rows_are_paired():
    costs = pd.DataFrame({"variant": ["genie", "genie-ada fast"], "images": [3, 3],
                          "unet_evals_per_image": [40.0, 50.0], "seconds_per_image": [0.1, 0.15]})
    table = cost_table(costs).set_index("variant")
    assert table.loc["genie-ada fast", "evals_vs_genie"] == 1.25
    assert table.loc["genie-ada fast", "seconds_vs_genie"] == pytest.approx(1.5)
    episodes = pd.DataFrame([{"seed": s, "shots": 1, "episode": e, "variant": v, "accuracy": a + s / 10,
                              "extra_images": 2}
                             for s in (0, 1) for e, (x, y) in enumerate([(0.5, 0.6), (0.6, 0.6), (0.7, 0.8)])
                             for v, a in (("genie-ada", x), ("genie-ada-fast", y))])
    table = summarise_episodes(episodes, [Variant("genie-ada"), Variant("genie-ada-fast")])
    [row] = few_shot_rows({"episodes": episodes, "table": table}).to_dict("records")
    assert row["fast_minus_exact"] == pytest.approx(0.0667, abs=1e-4) and row["episodes"] == 3
    assert row["seeds"] == 2 and row["paired_ci95"] > 0 and row["across_ci95"] == pytest.approx(0)
    assert row["exact"] == pytest.approx(0.65)
    assert few_shot_rows(None).empty
