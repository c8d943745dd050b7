"""The label-consistency judge: each generated image judged as its label, its source, or neither."""
import numpy as np
import pytest

from models.benchmarks.consistency import consistency_table, consistent, judge


def test_judge_outcomes_and_filter():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    verdicts = judge(probabilities, ["a", "b", "c"], labels=["a", "a", "a"], sources=["b", "b", "b"])
    assert list(verdicts["outcome"]) == ["as label", "as source", "neither"]
    assert list(verdicts["p_label"]) == [0.9, 0.2, 0.1]
    assert list(consistent(verdicts["p_label"], 0.5)) == [True, False, False]
    table = consistency_table(verdicts.assign(variant="genie"))
    assert table.loc[0, ["as label", "as source", "neither", "images"]].tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 3])
