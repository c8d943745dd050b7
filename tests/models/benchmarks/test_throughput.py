"""The throughput benchmark's inputs and its speed-up figure."""
from pathlib import Path

import pandas as pd

from models.benchmarks.throughput import next_class_pairs, speedup


def test_speedup_only_compares_the_same_ratio():
    rows = [{"method": "genie", "ratio": 0.6, "images_per_second": 40.0},
            {"method": "genie (reference: batch 1)", "ratio": 0.6, "images_per_second": 8.0}]
    assert speedup(rows) == 5.0
    rows[1]["ratio"] = 0.8
    assert speedup(rows) is None


def test_each_source_is_edited_towards_the_next_class():
    manifest = pd.DataFrame({"path": ["0/a.png", "1/b.png", "9/c.png", "2/d.png", "3/e.png"],
                             "label": ["0", "1", "9", "2", "3"], "split": ["train", "val", "train", "train", "train"]})
    sources, targets = next_class_pairs(manifest, Path("data"), ["0", "1", "2", "3", "9"], images=3)
    assert sources == [Path("data/0/a.png"), Path("data/9/c.png"), Path("data/2/d.png")]  # train images only
    assert targets == ["1", "0", "3"]  # the last class wraps around to the first
