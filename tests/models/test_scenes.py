"""The embedded scenes: a spurious context in train only, read back from the images; worst-group figures."""
import hashlib

import numpy as np
import pandas as pd
import pytest

from models.benchmarks.context import context_kept, context_reader, context_table, worst_group_gap
from models.config import ConfigError, DatasetConfig
from models.dataset import DatasetError, read_metadata, scan_imagefolder, split_images
from models.evaluation import group_metrics, group_table
from models.params import load_settings
from models.scenes import BACKGROUNDS, CORRELATION, COUNTS, SHAPES, export_scenes


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes") / "scenes"
    export_scenes(root)
    return root


@pytest.fixture(scope="module")
def manifest(scenes):
    return split_images(scan_imagefolder(scenes).images, DatasetConfig(path=scenes), read_metadata(scenes))


def test_train_is_correlated_val_and_test_are_not(manifest):
    assert "metadata.csv" not in set(manifest["path"]) and len(manifest) == len(SHAPES) * sum(COUNTS.values())
    shares = pd.crosstab([manifest["split"], manifest["label"]], manifest["context"], normalize="index")
    for own, shape in zip(BACKGROUNDS, SHAPES):
        assert shares.loc[("train", shape), own] == pytest.approx(CORRELATION)
        for split in ("val", "test", "unused"):
            assert np.allclose(shares.loc[(split, shape)], 1 / len(BACKGROUNDS))  # every class on every context


def test_the_split_comes_from_the_metadata_whatever_the_seed(scenes, manifest):
    other = split_images(scan_imagefolder(scenes).images, DatasetConfig(path=scenes, split={"seed": 7}),
                         read_metadata(scenes))
    assert other.set_index("path")["split"].sort_index().equals(manifest.set_index("path")["split"].sort_index())


def test_the_export_is_the_same_bytes_everywhere(scenes, tmp_path):
    again = tmp_path / "scenes"
    export_scenes(again)
    for name in ("metadata.csv", "circle/0000.png", f"cross/{len(SHAPES) * sum(COUNTS.values()) - 1:04d}.png"):
        assert hashlib.md5((again / name).read_bytes()).digest() == hashlib.md5((scenes / name).read_bytes()).digest()


def test_the_context_reader_reads_every_real_image(scenes, manifest):
    reader = context_reader(manifest, scenes)
    held = manifest[manifest["split"] != "train"]
    assert reader.read([scenes / p for p in held["path"]]) == held["context"].tolist()


def test_kept_context_and_off_usual(scenes, manifest):
    reader = context_reader(manifest, scenes)
    water, night = (manifest[(manifest["label"] == "circle") & (manifest["context"] == c)].iloc[0]
                    for c in ("water", "night"))
    # a "square" image that is a circle's water scene keeps a circle source's water; one on grass (the usual
    # context of squares) does not; from noise there is no source
    grass = manifest[(manifest["label"] == "square") & (manifest["context"] == "grass")].iloc[0]
    verdicts = pd.DataFrame({"variant": ["genie r=0.8", "genie r=0.8", "txt2img"], "seed": 0,
                             "label": ["square"] * 3, "image": [scenes / water["path"], scenes / grass["path"],
                                                                 scenes / night["path"]],
                             "source": [str(scenes / water["path"]), str(scenes / water["path"]), ""]})
    seen = context_kept(verdicts, reader, manifest, scenes)
    assert seen["context"].tolist() == ["water", "grass", "night"]
    assert seen["kept_context"].tolist()[:2] == [1.0, 0.0] and np.isnan(seen["kept_context"].iloc[2])
    assert seen["off_usual"].tolist() == [1.0, 0.0, 1.0]
    shares = context_table(seen).set_index("variant")
    assert shares.loc["genie r=0.8", "kept_context"] == 0.5 and shares.loc["txt2img", "off_usual"] == 1.0


def test_worst_group_figures():
    groups = group_table(["a", "a", "a", "b", "b"], ["a", "b", "a", "b", "b"], ["x", "x", "y", "x", ""])
    assert groups.values.tolist() == [["a", "x", 0.5, 2], ["a", "y", 1.0, 1], ["b", "x", 1.0, 1]]
    assert group_metrics(groups) == {"accuracy.worst_group": 0.5, "accuracy.group_mean": pytest.approx(2.5 / 3)}
    # per seed, each variant's own worst group: seed 0 gains 0.5, seed 1 gains 0
    rows = pd.DataFrame([{"seed": s, "variant": v, "context_group": g, "image": i, "correct": c}
                         for s, v, g, i, c in [(0, "a", "p", 0, 1), (0, "a", "q", 1, 1), (0, "b", "p", 0, 1),
                                               (0, "b", "q", 1, 0), (1, "a", "p", 0, 0), (1, "b", "p", 0, 0)]])
    gap = worst_group_gap(rows, "a", "b")
    assert gap.per_seed == (1.0, 0.0) and gap.mean == 0.5 and gap.seeds == 2


def test_a_preset_and_a_bad_metadata_file(tmp_path):
    settings = load_settings(tmp_path / "none.yaml", ["dataset=scenes", "classifier.epochs=2"])
    assert (settings.dataset.name, str(settings.dataset.path)) == ("scenes", "data/scenes")
    assert settings.benchmark.long_tail.imbalance_ratio == 1 and settings.benchmark.long_tail.sweep
    with pytest.raises(ConfigError, match=r"^dataset: 'birds' is not an embedded dataset \(digits, scenes\)"):
        load_settings(tmp_path / "none.yaml", ["dataset=birds"])
    (tmp_path / "metadata.csv").write_text("path,place\na/1.png,water\n")
    with pytest.raises(DatasetError, match=r"metadata.csv: column\(s\) context missing"):
        read_metadata(tmp_path)
    (tmp_path / "metadata.csv").write_text("path,context,split\na/1.png,water,holdout\n")
    with pytest.raises(DatasetError, match=r"metadata.csv: split 'holdout' is not one of train, val, test, unused"):
        read_metadata(tmp_path)
