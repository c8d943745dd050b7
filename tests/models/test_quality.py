"""The quality judge's pairs: seeded, train sources only, another class as target."""
import pandas as pd

from models.quality import random_pairs


def test_pairs_are_seeded_train_sources_with_another_class_as_target():
    manifest = pd.DataFrame({"path": [f"{c}/{i}.png" for c in "012" for i in range(4)],
                             "label": [c for c in "012" for _ in range(4)], "split": ["train", "val"] * 6})
    pairs = random_pairs(manifest, "data", list("012"), 20, seed=3)
    train = {f"data/{p}" for p in manifest.loc[manifest["split"] == "train", "path"]}
    assert len(pairs) == 20 and all(s in train and c != t and s.split("/")[1] == c for s, c, t in pairs)
    assert random_pairs(manifest, "data", list("012"), 20, seed=3) == pairs != random_pairs(manifest, "data",
                                                                                               list("012"), 20, seed=4)
