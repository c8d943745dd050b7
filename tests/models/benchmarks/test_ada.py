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
    assert len(held_out_pairs(manifest, Path("data"), list("012"), 99, seed=0)) == 6  # one per test image


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
