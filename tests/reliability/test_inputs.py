"""Hostile or odd inputs: a decompression bomb, symlinks, odd class names, nested folders, a misspelt path,
a bad prompt. Each ends in a reason, never a traceback."""
import struct
import zlib

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

pytestmark = pytest.mark.nights  # a whole night or more: make test-nights

CUSTOM = ["--set", "dataset.path=data/mine", "--set", "dataset.embedded=false", "--set", "dataset.name=mine"]


def claims_size(path, width: int, height: int) -> None:
    """A small PNG whose header claims width x height (its pixels are never there)."""
    Image.new("L", (8, 8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # chunk type + payload
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))


def dataset(project):
    root = project / "data" / "mine"
    for name in ("a&b", "<b>&", "plain"):
        (root / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (16, 16), (40 * i, 90 if name == "plain" else 10, 200 if "&" in name else 0)).save(
                root / name / f"{i}.png")
    (root / "plain" / "deeper").mkdir()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(root / "plain" / "deeper" / "nested.png")
    claims_size(root / "plain" / "bomb.png", 20000, 20000)
    claims_size(root / "plain" / "large.png", 5000, 5000)
    outside = project / "outside.png"
    Image.new("RGB", (16, 16)).save(outside)
    (root / "plain" / "escape.png").symlink_to(outside)
    (root / "plain" / "dangling.png").symlink_to(project / "nowhere.png")
    (root / "plain" / "inside.png").symlink_to(root / "plain" / "0.png")  # within the dataset: fine
    return root


def test_bad_files_are_skipped_with_reasons_and_odd_names_work(project, genie):
    dataset(project)
    prepared = genie("prepare", *CUSTOM)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    report = pd.read_csv(project / "artifacts/mine/split/bad_files.csv").set_index("path")
    reason = {path.split("/")[-1]: text for path, text in report["reason"].items()}
    assert reason["bomb.png"].startswith("decompression bomb")  # refused by PIL before any pixel is read
    assert "5000x5000 is more than dataset.max_pixels" in reason["large.png"]  # our cap, from the header
    assert reason["escape.png"].startswith("symbolic link leaving the dataset")
    assert reason["dangling.png"] == "dangling symbolic link"
    assert report.loc[report.index.str.endswith("nested.png"), "action"].tolist() == ["nested"]
    raised = genie("prepare", *CUSTOM, "--set", "dataset.max_pixels=100000000")
    assert raised.returncode == 0
    report = pd.read_csv(project / "artifacts/mine/split/bad_files.csv")
    large = report.loc[report["path"].str.endswith("large.png"), "reason"].item()
    assert large.startswith("truncated or corrupt image")  # under a raised cap it is decoded (and its pixels missing)

    night = genie("run", "--until", "baseline", *CUSTOM)
    assert night.returncode == 0, night.stderr[-3000:]
    version = MlflowClient().get_model_version("mine-classifier", "1")
    assert version.tags["classes"] == "<b>&,a&b,plain"  # display names kept
    per_class = MlflowClient().download_artifacts(version.run_id, "evaluation/per_class.csv", str(project))
    assert set(pd.read_csv(per_class)["class"]) == {"<b>&", "a&b", "plain"}  # one table, display names kept


def test_a_misspelt_path_or_prompt_is_one_line(project, genie):
    typo = genie("prepare", "--set", "dataset.path=data/digts")
    assert typo.returncode == 1 and not (project / "data/digts").exists()
    assert typo.stderr.strip().splitlines()[-1] == (
        "error: dataset.path: folder data/digts not found (the embedded datasets are exported only to data/digits and data/scenes)")
    prompt = genie("prepare", "--set", "generator.prompt=a {colour} photo of a {name}")
    assert prompt.returncode == 2 and prompt.stderr.strip() == (
        "error: params.yaml: generator: prompt 'a {colour} photo of a {name}': unknown placeholder "
        "{colour}; only {name} is filled")
