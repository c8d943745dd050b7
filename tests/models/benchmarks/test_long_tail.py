"""The long-tail benchmark: per-seed settings, equal budgets per variant, the summary over seeds."""
import pandas as pd
import pytest

from models.benchmarks.episodes import Variant
from models.benchmarks.long_tail import long_tail_edits, long_tail_settings, summarise_seeds
from models.config import Settings

MANIFEST = pd.DataFrame({"path": ["5/a.png", "5/b.png", "6/c.png", "7/d.png"], "label": ["5", "5", "6", "7"],
                         "split": "train"})
SELECTION = pd.DataFrame({"target": ["5", "5", "5", "6"], "source_class": ["6", "7", "6", "5"],
                          "source": ["data/6/c.png", "data/7/d.png", "data/6/e.png", "data/5/a.png"]})


def test_each_seed_gets_its_own_long_tailed_project():
    settings = long_tail_settings(Settings(), seed=2)
    assert settings.dataset.long_tail.imbalance_ratio == 50 and settings.dataset.long_tail.seed == 2
    assert settings.classifier.seed == 2 and settings.select.targets == "tail"
    assert settings.workdir.as_posix().endswith("benchmark/long-tail/seed-2/digits")
    assert settings.generator_model == Settings().generator_model  # one generator for every seed


def test_every_method_gets_the_selection_budget_per_class():
    settings = Settings(dataset={"path": "data"})
    budget = SELECTION.groupby("target").size().to_dict()
    for variant in (Variant("genie", 0.8), Variant("txt2img"), Variant("img2img", 0.3), Variant("genie-ada+filter")):
        edits = long_tail_edits(settings, variant, SELECTION, MANIFEST)
        assert pd.Series([e.label for e in edits]).value_counts().to_dict() == budget, variant
    img2img = long_tail_edits(settings, Variant("img2img", 0.3), SELECTION, MANIFEST)
    assert {e.source_class for e in img2img} == {"5", "6"} and {e.ratio for e in img2img} == {0.3}  # own images
    assert long_tail_edits(settings, Variant("real"), SELECTION, MANIFEST) == []


def test_summary_over_seeds():
    per_seed = pd.DataFrame({"seed": [0, 1], "variant": ["real", "real"], "generated_images": [0, 0],
                             "accuracy": [0.8, 0.9], "accuracy.many": [1.0, 1.0], "accuracy.medium": [0.9, 0.9],
                             "accuracy.few": [0.6, 0.8]})
    row = summarise_seeds(per_seed).iloc[0]
    assert row["accuracy.mean"] == pytest.approx(0.85) and row["accuracy.few.std"] == pytest.approx(0.1)
    assert row["seeds"] == 2
