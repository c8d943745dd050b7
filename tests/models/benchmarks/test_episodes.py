"""The few-shot protocol, without Prefect."""
import numpy as np
import pytest

from models.benchmarks.episodes import Variant, episode_edits, fit_and_score, sample_episodes, variants
from models.benchmarks.results import mean_ci
from models.config import GenieConfig

GENIE = GenieConfig(ada_ratios=(0.5, 0.8), img2img_ratios=(0.3,))

POOL = {c: [f"{c}/{i}.png" for i in range(10)] for c in "56789"}


def test_episodes_are_a_pure_function_of_pools_and_seed():
    one = sample_episodes(POOL, POOL, ways=3, shots=2, queries=4, episodes=5, seed=0)
    assert one == sample_episodes(POOL, POOL, ways=3, shots=2, queries=4, episodes=5, seed=0)
    assert one != sample_episodes(POOL, POOL, ways=3, shots=2, queries=4, episodes=5, seed=1)
    for episode in one:
        assert len(episode.classes) == 3 and len(episode.support) == 6 and len(episode.queries) == 12
        assert all(p.startswith(c) for p, c in episode.support + episode.queries)
    with pytest.raises(ValueError, match="class 5 has 10 query images, 11 needed"):
        sample_episodes(POOL, POOL, ways=3, shots=1, queries=11, episodes=1, seed=0)
    with pytest.raises(ValueError, match="6-way episodes need 6 novel classes"):
        sample_episodes(POOL, POOL, ways=6, shots=1, queries=1, episodes=1, seed=0)


def test_every_method_gets_the_same_budget_per_class():
    [episode] = sample_episodes(POOL, POOL, ways=3, shots=2, queries=1, episodes=1, seed=0)
    plan = variants(("none", "img2img", "txt2img", "genie", "genie-ada"), GENIE, sweep=True)
    assert [v.label for v in plan] == ["none", "img2img r=0.3", "txt2img", "genie r=0.5", "genie r=0.8", "genie-ada"]
    budgets = {}
    for variant in plan:
        edits = episode_edits(episode, variant, seed=0)
        budgets[variant.label] = len(edits)
        assert len(set(edits)) == len(edits)  # distinct images, not copies
        for edit in edits:
            if variant.method == "genie":
                assert edit.source_class != edit.label and edit.ratio == variant.ratio
            if variant.method == "img2img":
                assert edit.source_class == edit.label == edit.source.split("/")[0]
    assert budgets == {"none": 0, "img2img r=0.3": 12, "txt2img": 12, "genie r=0.5": 12, "genie r=0.8": 12,
                       "genie-ada": 0}  # (N-1) * K per class; Ada reuses genie's candidates
    # Ada's candidates are genie's edits: the same pair has the same seed at every r
    low, high = (episode_edits(episode, Variant("genie", r), 0) for r in (0.5, 0.8))
    assert [e.seed for e in low] == [e.seed for e in high]


def test_logistic_regression_and_interval():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:2] * 5
    x = np.concatenate([c + rng.normal(size=(10, 4)) for c in centres])
    labels = ["a"] * 10 + ["b"] * 10
    assert fit_and_score(x, labels, centres, ["a", "b"]) == 1.0
    assert fit_and_score(x, labels, centres, ["b", "a"]) == 0.0
    mean, half = mean_ci([0.5, 0.7, 0.6, 0.6])
    assert mean == pytest.approx(0.6) and half == pytest.approx(1.96 * np.std([0.5, 0.7, 0.6, 0.6]) / 2)
