"""GeNIe-Ada's class means: summed in chunks to the all-at-once values, embedded once, then read from disk."""
import numpy as np
import pandas as pd

import tasks.editing
from models.classifier import Embedder, build_model, save_checkpoint
from models.dataset import load_rgb, subset
from models.methods.genie_ada import class_means
from tasks.caching import Outputs
from tasks.editing import ada_features

CLASSES = ["0", "1", "2"]


def inputs(digits, tmp_path):
    """A split with 300 train images (two chunks of embedding) and a tiny classifier beside it."""
    rows = [(p.relative_to(digits).as_posix(), c, "train" if i < 100 else "val")  # val: not in the means
            for c in CLASSES for i, p in enumerate(sorted((digits / c).glob("*.png"))[:103])]
    manifest = pd.DataFrame(rows, columns=["path", "label", "split"])
    manifest.to_csv(tmp_path / "split.csv", index=False)
    save_checkpoint(tmp_path / "model" / "model.pt", build_model("test_resnet", len(CLASSES)), "test_resnet",
                    CLASSES, 32)
    split = Outputs.of({"classes": CLASSES, "dataset_md5": "d1"}, manifest=tmp_path / "split.csv")
    return split, Outputs.of(checkpoint=tmp_path / "model" / "model.pt"), manifest


def test_means_are_the_all_at_once_means_embedded_once(digits, tmp_path, monkeypatch):
    split, classifier, manifest = inputs(digits, tmp_path)
    embed = Embedder(classifier["checkpoint"])
    train = manifest[manifest["split"] == "train"]
    z = embed([load_rgb(digits / p) for p in train["path"]])
    before = {c: z[(train["label"] == c).to_numpy()].mean(0) for c in CLASSES}  # every feature kept, as before
    means = class_means(embed, *subset(manifest, digits, "train", CLASSES), CLASSES, load_rgb)
    assert list(means) == CLASSES and all(means[c].dtype == before[c].dtype for c in CLASSES)
    for c in CLASSES:
        np.testing.assert_allclose(means[c], before[c], rtol=1e-5, atol=1e-6)

    calls = []
    real = Embedder.__call__
    monkeypatch.setattr(Embedder, "__call__", lambda self, images: calls.append(len(images)) or real(self, images))
    tasks.editing._ada_features.cache_clear()
    _, first = ada_features(digits, split, classifier)
    assert calls == [256, 44]  # streamed in chunks of 256
    [saved] = (tmp_path / "model").glob("ada_means-*.npz")
    for torn in (False, True):
        if torn:  # unreadable: embedded again, and written anew
            saved.write_bytes(saved.read_bytes()[:100])
        calls.clear()
        tasks.editing._ada_features.cache_clear()  # as in another process
        embed, again = ada_features(digits, split, classifier)
        assert calls == ([256, 44] if torn else [])
        assert isinstance(embed, Embedder) and list(again) == CLASSES
        for c in CLASSES:
            np.testing.assert_array_equal(again[c], first[c])
            np.testing.assert_allclose(first[c], means[c], rtol=1e-6)
    # another classifier is another file
    save_checkpoint(tmp_path / "model" / "model.pt", build_model("test_resnet", len(CLASSES)), "test_resnet",
                    CLASSES, 32)
    tasks.editing._ada_features.cache_clear()
    ada_features(digits, split, Outputs.of(checkpoint=tmp_path / "model" / "model.pt"))
    assert len(list((tmp_path / "model").glob("ada_means-*.npz"))) == 2
