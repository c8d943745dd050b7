"""A benchmark replicate's settings: its own folder and seeds, the night's settings otherwise."""
from flows.replicates import long_tail_settings, replicate
from models.config import Settings
from models.params import load_settings


def test_a_replicate_uses_the_whole_train_split_and_its_own_seeds_even_when_the_night_is_long_tailed():
    night = load_settings("missing.yaml", ["dataset.long_tail.imbalance_ratio=50", "dataset.long_tail.seed=3"])
    one = replicate(night, 1)
    assert one.dataset.long_tail.imbalance_ratio is None and one.dataset.long_tail.seed == 3
    assert one.generator.embedded.seed == one.classifier.seed == 1
    assert one.workdir.as_posix() == "artifacts/digits/benchmark/seed-1/digits"
    assert one.generator.seed == night.generator.seed  # the edits' noise: paired across methods, as in the night
    same = {"dataset": night.dataset, "classifier": night.classifier, "generator": night.generator, "paths": night.paths}
    assert one.model_copy(update=same) == night  # nothing else changes



def test_each_generator_seed_gets_its_own_long_tailed_project_and_generator():
    settings = long_tail_settings(replicate(Settings(), 2), seed=2)
    assert settings.dataset.long_tail.imbalance_ratio == 50 and settings.dataset.long_tail.seed == 2
    assert settings.classifier.seed == 2 and settings.select.targets == "tail"
    assert settings.workdir.as_posix().endswith("benchmark/seed-2/digits/long-tail/digits")
    assert settings.generator_model.endswith("benchmark/seed-2/digits/generator")  # the replicate's, not the night's
    assert settings.generator_model != long_tail_settings(replicate(Settings(), 0), seed=0).generator_model
